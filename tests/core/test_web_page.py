"""The server's browser page, for real: ``serve`` on 127.0.0.1 with tiny models, driven in
Debian's chromium by Playwright (``executable_path``: Playwright downloads no browser).

The HTTP checks (headers, the file route, the schema) need only the server; the browser
tests skip, saying why, only where chromium or Playwright is missing (``vendor_install.py
--dev`` installs both, so CI runs them). axe-core (npm, MPL-2.0) comes from the same set-up.

``IMG3D_WEB_SCREENSHOT=path`` makes the picture-job test save its finished page there
(that is how ``docs/web.png`` is made).
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests

pytest.importorskip("fastapi", reason="the [server] extra is part of the dev set-up")
pytest.importorskip("uvicorn")

from blender_img3d.core import settings as defaults  # noqa: E402
from blender_img3d.core.server import web  # noqa: E402
from blender_img3d.core.server.config import ServerConfig  # noqa: E402
from tests.fixtures.server import REPO_ROOT, ServerProcess  # noqa: E402

TOKEN = "web-token-0123456789abcdef"
FAST = {"steps": "3", "grid_size": "16", "target_faces": "0"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",  # WebGL still works: ANGLE falls back to SwiftShader on the CPU
    "--enable-unsafe-swiftshader",  # ... which newer Chromium wants to be asked for
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# vendor_install.py --dev installs the npm packages under <venv>/npm (the server finds
# model-viewer there by itself).
NPM = Path(sys.prefix) / "npm" / "node_modules"
AXE = NPM / "axe-core" / "axe.min.js"
VIEWER = web.default_viewer_script()
# Chromium asks before a page starts many downloads (about ten): the test reloads between.
DOWNLOADS_PER_PAGE = 5
# axe-core rules about names/labels and contrast.
AXE_RULES = [
    "label",
    "select-name",
    "button-name",
    "input-button-name",
    "aria-input-field-name",
    "aria-progressbar-name",
    "form-field-multiple-labels",
    "image-alt",
    "link-name",
    "document-title",
    "html-has-lang",
    "color-contrast",
]


# --- the server ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web-jobs")


@pytest.fixture(scope="module")
def server(surface_image_model_dir, surface_text_model_dir, jobs_dir, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("web-token") / "token.txt"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    process = ServerProcess(
        [
            *("--model", str(surface_image_model_dir)),
            *("--text-model", str(surface_text_model_dir)),
            *("--device", "cpu", "--token-file", str(token_file)),
            *("--jobs-dir", str(jobs_dir)),
        ],
        tmp_path_factory.mktemp("web-log") / "serve.log",
    )
    yield process
    process.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def need(path: Path, what: str) -> None:
    if not path.is_file():
        pytest.skip(f"{what} is not installed at {path}: python3 vendor_install.py --dev (npm)")


def job_folders(jobs_dir: Path) -> set[str]:
    return {path.name for path in jobs_dir.iterdir()}


def finished_job(server, prompt: str = "a cube", output: str = "cube.glb") -> str:
    settings = {"steps": 2, "grid_size": 16, "target_faces": 0, "outputs": [output]}
    response = requests.post(
        f"{server.url}/v1/jobs",
        json={"prompt": prompt, "settings": settings},
        headers=auth(),
        timeout=30,
    )
    job_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = requests.get(f"{server.url}/v1/jobs/{job_id}", headers=auth(), timeout=10).json()
        if state["state"] == "finished":
            return job_id
        assert state["state"] in ("queued", "running"), state
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def glb_json(data: bytes) -> dict:
    """The JSON chunk of a GLB."""
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    return json.loads(data[20 : 20 + length])


# --- HTTP: no browser needed -----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/app.css", web.VIEWER_URL])
def test_page_and_assets_carry_the_security_headers_and_no_cors(server, path):
    if path == web.VIEWER_URL:
        need(VIEWER, "model-viewer")
    response = requests.get(
        server.url + path, headers={"Origin": "http://evil.example"}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Security-Policy"] == web.CONTENT_SECURITY_POLICY
    policy = dict(
        directive.strip().split(" ", 1) for directive in web.CONTENT_SECURITY_POLICY.split(";")
    )
    assert policy["script-src"] == "'self' 'wasm-unsafe-eval'"  # no inline script, no eval
    assert policy["default-src"] == "'none'"
    assert "http" not in web.CONTENT_SECURITY_POLICY  # no third-party origin
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert not any(name.lower().startswith("access-control") for name in response.headers)


def test_the_page_has_no_inline_script_or_handler():
    from html.parser import HTMLParser

    class Scripts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.problems: list[str] = []
            self.in_script = False

        def handle_starttag(self, tag, attrs):
            names = dict(attrs)
            if tag == "script":
                self.in_script = True
                if not names.get("src", "").startswith("/static/"):
                    self.problems.append(f"script without a local src: {attrs}")
            self.problems += [f"{tag} {name}" for name in names if name.startswith("on")]
            if tag == "style" or "style" in names:
                self.problems.append(f"inline style on {tag}")

        def handle_endtag(self, tag):
            self.in_script = False if tag == "script" else self.in_script

        def handle_data(self, data):
            if self.in_script and data.strip():
                self.problems.append("inline script")

    parser = Scripts()
    parser.feed((web.WEB_DIR / "index.html").read_text())
    assert parser.problems == []


def test_unknown_static_files_are_404(server):
    for path in ("/static/index.html", "/static/..%2Fweb.py", "/static/vendor/three.js"):
        assert requests.get(server.url + path, timeout=10).status_code == 404


def test_settings_schema_is_the_cores_bounds_and_needs_the_token(server):
    assert requests.get(f"{server.url}{web.SETTINGS_SCHEMA_PATH}", timeout=10).status_code == 401
    schema = requests.get(f"{server.url}{web.SETTINGS_SCHEMA_PATH}", headers=auth(), timeout=10)
    schema = schema.json()
    fields = {f["name"]: f for f in schema["fields"] + schema["advanced"]}
    assert (fields["seed"]["min"], fields["seed"]["max"]) == (0, defaults.MAX_SEED)
    assert fields["seed"]["default"] == defaults.DEFAULT_SEED
    assert fields["batch"]["max"] == defaults.MAX_BATCH
    assert fields["target_faces"]["max"] == defaults.MAX_TARGET_FACES
    assert fields["target_faces"]["default"] == defaults.DEFAULT_TARGET_FACES
    assert fields["steps"]["default"] == defaults.DEFAULT_STEPS
    assert (fields["grid_size"]["min"], fields["grid_size"]["max"]) == (
        defaults.MIN_GRID_SIZE,
        defaults.MAX_GRID_SIZE,
    )
    background = fields["background"]
    assert background["default"] == defaults.DEFAULT_BACKGROUND
    assert [choice["name"] for choice in background["choices"]] == list(defaults.BACKGROUNDS)
    assert schema["presets"]["values"] == defaults.GENERATION_PRESETS
    assert set(schema["presets"]["settings"]) <= set(fields)
    assert [f["suffix"] for f in schema["formats"]] == [
        fmt.suffix for fmt in defaults.EXPORT_FORMATS.values()
    ]
    assert schema["viewer"] is VIEWER.is_file()
    # No bound is restated in the page's script.
    script = (web.WEB_DIR / "app.js").read_text()
    for number in (defaults.MAX_SEED, defaults.MAX_TARGET_FACES, defaults.MAX_STEPS, 20000):
        assert str(number) not in script


def test_schema_says_when_the_viewer_is_missing(tmp_path):
    assert web.settings_schema(ServerConfig(viewer_script=tmp_path / "none.js"))["viewer"] is False
    assert web.default_viewer_script().parts[-5:] == web.VIEWER_IN_NPM.parts[-5:]


def test_one_result_file_equals_its_member_of_the_zip(server):
    job_id = finished_job(server)
    base = f"{server.url}/v1/jobs/{job_id}"
    archive = zipfile.ZipFile(io.BytesIO(requests.get(f"{base}/result", headers=auth()).content))
    document = json.loads(archive.read("result.json"))
    assert document["files"]
    for entry in document["files"]:
        response = requests.get(f"{base}/files/{entry['name']}", headers=auth(), timeout=10)
        assert response.status_code == 200
        assert response.content == archive.read(entry["name"])
        assert response.headers["Content-Type"] == "model/gltf-binary"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "attachment" in response.headers["Content-Disposition"]
        # model-viewer loads it with no decoder from a CDN: no Draco, KTX2 or meshopt.
        gltf = glb_json(response.content)
        assert not gltf.get("extensionsUsed") and not gltf.get("extensionsRequired")
        assert "COLOR_0" in gltf["meshes"][0]["primitives"][0]["attributes"]
    response = requests.get(f"{base}/files/result.json", headers=auth(), timeout=10)
    assert response.json()["files"] == document["files"]


def test_a_file_name_in_any_script_downloads_with_its_name(server):
    job_id = finished_job(server, output="stühl (1).glb")
    base = f"{server.url}/v1/jobs/{job_id}"
    archive = zipfile.ZipFile(io.BytesIO(requests.get(f"{base}/result", headers=auth()).content))
    [entry] = json.loads(archive.read("result.json"))["files"]
    assert entry["name"] == "files/0/stühl (1).glb"
    response = requests.get(f"{base}/files/{entry['name']}", headers=auth(), timeout=10)
    assert response.content == archive.read(entry["name"])
    disposition = response.headers["Content-Disposition"]
    assert disposition.endswith("filename*=UTF-8''st%C3%BChl%20%281%29.glb"), disposition


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("../result.zip", 400),
        ("files/../../token.txt", 400),
        ("files/0/.hidden", 400),
        ("files\\0\\cube.glb", 400),
        ("files/0/cube.glb ", 400),
        ("a/b/c/d/e", 400),
        ("files/9/cube.glb", 404),
        ("result.zip", 404),
    ],
)
def test_result_file_names_are_strict(server, name, status):
    job_id = finished_job(server)
    # Dots percent-encoded: a client would remove "../" before sending, the server must not
    # rely on that.
    url = f"{server.url}/v1/jobs/{job_id}/files/{name.replace('..', '%2E%2E')}"
    response = requests.get(url, headers=auth(), timeout=10)
    assert response.status_code == status, response.text
    assert "\n" not in response.json()["error"]
    assert requests.get(url, timeout=10).status_code == 401


def test_result_files_need_the_token_and_a_finished_job(server):
    job_id = finished_job(server)
    url = f"{server.url}/v1/jobs/{job_id}/files/result.json"
    assert requests.get(url, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * 26}
    assert requests.get(url, headers=wrong, timeout=10).status_code == 401
    missing = f"{server.url}/v1/jobs/{'0' * 32}/files/result.json"
    assert requests.get(missing, headers=auth(), timeout=10).status_code == 404
    running = requests.post(
        f"{server.url}/v1/jobs",
        json={"prompt": "a tower", "settings": {"steps": 1000, "grid_size": 16}},
        headers=auth(),
        timeout=30,
    ).json()["id"]
    try:
        url = f"{server.url}/v1/jobs/{running}/files/result.json"
        assert requests.get(url, headers=auth(), timeout=10).status_code == 409
    finally:
        requests.delete(f"{server.url}/v1/jobs/{running}", headers=auth(), timeout=10)


# --- the browser -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: python3 vendor_install.py --dev installs it (apt)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is in the dev set-up (vendor_install.py --dev)"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console_problems = []

    def note(message) -> None:
        # The token prompt starts from a refused request (401): expected, not a problem.
        if message.type == "error" and "status of 401" not in message.text:
            page.console_problems.append(message.text)

    page.on("console", note)
    page.on("pageerror", lambda error: page.console_problems.append(str(error)))
    yield page
    context.close()


def open_page(page, server, token: str = TOKEN) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token", token)
    clear_message(page)
    page.click("#token-form button[type=submit]")
    if token == TOKEN:
        page.wait_for_selector("#job-form:not([hidden])")
    else:
        wait_message(page)


def clear_message(page) -> None:
    page.evaluate("() => { document.getElementById('message').textContent = ''; }")


def wait_message(page) -> str:
    """The page's one-line message, once it shows one."""
    page.wait_for_function("() => document.getElementById('message').textContent !== ''")
    return page.locator("#message").inner_text()


def fill_settings(page, values: dict[str, str]) -> None:
    page.click("details summary")
    for name, value in values.items():
        page.fill(f"#set-{name}", value)


def watch_statuses(page) -> None:
    """Record every status line the page shows (a job may pass through a phase quickly)."""
    page.evaluate(
        """() => {
            window.seen = [];
            new MutationObserver(() => {
                for (const p of document.querySelectorAll('.job .status')) {
                    if (window.seen[window.seen.length - 1] !== p.textContent)
                        window.seen.push(p.textContent);
                }
            }).observe(document.getElementById('jobs'),
                       {subtree: true, childList: true, characterData: true});
        }"""
    )


def card(page):
    return page.locator("li.job").first


def axe_violations(page) -> list:
    need(AXE, "axe-core")
    page.evaluate(AXE.read_text())  # evaluated by the test driver: the page's CSP stays on
    result = page.evaluate(
        "(rules) => axe.run(document, {runOnly: {type: 'rule', values: rules}})", AXE_RULES
    )
    return [(v["id"], [node["target"] for node in v["nodes"]][:3]) for v in result["violations"]]


def viewer_pixels(page, locator):
    from PIL import Image

    return Image.open(io.BytesIO(locator.screenshot())).convert("RGB")


def test_picture_job_shows_progress_a_preview_and_downloads_equal_to_the_zip(
    page, server, example_image, tmp_path
):
    need(VIEWER, "model-viewer")
    open_page(page, server)
    page.set_input_files("#image", str(example_image))
    fill_settings(page, {**FAST, "batch": "2"})
    for suffix in (".obj", ".dxf", ".step"):
        page.check(f"input[name=format][value='{suffix}']")
    assert page.input_value("#set-background") == defaults.DEFAULT_BACKGROUND
    page.select_option("#set-background", "classic")
    watch_statuses(page)
    page.click("#submit")
    page.wait_for_selector("li.job[data-ready=true]", timeout=120_000)
    seen = page.evaluate("window.seen")  # (the live steps: see the cancel test's long job)
    assert seen[0].startswith("Queued") and seen[-1] == "Finished.", seen
    assert card(page).locator("progress").get_attribute("value") == "1"

    # The preview: both variants load and render something other than an empty viewer.
    viewers = card(page).locator("model-viewer")
    assert viewers.count() == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('model-viewer')].every(v => v.loaded)"
    )
    page.evaluate(
        """() => {
            const empty = document.createElement('model-viewer');
            empty.id = 'empty-viewer';
            document.querySelector('.variant').append(empty);
        }"""
    )
    page.wait_for_timeout(1500)  # let both canvases draw a few frames
    empty = viewer_pixels(page, page.locator("#empty-viewer"))
    rendered = viewer_pixels(page, viewers.first)
    difference = np.abs(
        np.asarray(empty.resize(rendered.size), dtype=np.int16)
        - np.asarray(rendered, dtype=np.int16)
    ).max(axis=2)
    assert (difference > 24).mean() > 0.01, (difference > 24).mean()
    page.evaluate("() => document.getElementById('empty-viewer').remove()")
    metrics = card(page).locator("dl.metrics").first.inner_text()
    assert "Faces" in metrics and "Watertight" in metrics
    assert axe_violations(page) == []
    shot = os.environ.get("IMG3D_WEB_SCREENSHOT")
    if shot:  # docs/web.png: the whole page, scaled to 3/4 and 256 colours (< 200 KB)
        from PIL import Image

        full = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        small = full.resize((full.width * 3 // 4, full.height * 3 // 4), Image.LANCZOS)
        small.quantize(256).save(shot, optimize=True)

    # Every download equals the archive's bytes.
    job_id = card(page).get_attribute("data-job")
    zip_bytes = requests.get(f"{server.url}/v1/jobs/{job_id}/result", headers=auth()).content
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    report = json.loads(archive.read("report.json"))
    assert report["settings"]["image_settings"]["background"] == "classic"  # the page's choice
    by_name = {Path(name).name: name for name in archive.namelist() if name.startswith("files/")}
    buttons = card(page).locator("button[data-file]")
    names = [buttons.nth(i).get_attribute("data-file") for i in range(buttons.count())]
    assert {"stool_0.glb", "stool_1.step", "stool_1.dxf", f"{job_id}.zip"} <= set(names)
    assert any(name.endswith(".mtl") for name in names)  # OBJ's companion file
    assert set(by_name) <= set(names)
    for index, name in enumerate(names):
        if index and index % DOWNLOADS_PER_PAGE == 0:
            page.reload()  # the restored job list offers the same buttons
            page.wait_for_selector("li.job[data-ready=true]")
        with page.expect_download() as download:
            card(page).locator(f"button[data-file='{name}']").click()
        got = Path(download.value.path()).read_bytes()
        want = zip_bytes if name.endswith(".zip") else archive.read(by_name[name])
        assert got == want, name
        assert download.value.suggested_filename == name
    assert page.console_problems == []


def test_prompt_job_finishes_and_the_job_list_survives_a_reload(page, server):
    open_page(page, server)
    page.check("input[name=source][value=prompt]")
    assert page.locator("#set-background").is_hidden()  # a picture-only setting
    page.fill("#prompt", "a small red chair")
    fill_settings(page, FAST)
    page.click("#submit")
    page.wait_for_selector("li.job[data-ready=true]", timeout=120_000)
    job_id = card(page).get_attribute("data-job")
    assert card(page).locator("h3").inner_text() == "a small red chair"
    assert card(page).locator("button[data-file='a_small_red_chair.glb']").count() == 1

    page.reload()
    page.wait_for_selector(f"li.job[data-job='{job_id}'][data-ready=true]")
    assert card(page).locator(".status").inner_text() == "Finished."
    assert page.evaluate("() => localStorage.getItem('img3d.token')") is None
    assert page.evaluate("() => sessionStorage.getItem('img3d.token')") == TOKEN
    assert page.console_problems == []


def test_queue_position_live_progress_and_cancel_mid_run(page, server):
    open_page(page, server)
    page.check("input[name=source][value=prompt]")
    page.fill("#prompt", "a long tower")
    fill_settings(page, {**FAST, "steps": "1000"})
    page.click("#submit")
    long_job = page.locator(f"li.job[data-job='{card(page).get_attribute('data-job')}']")
    page.wait_for_function(
        "() => /step ([3-9]|\\d\\d+) of 1000, about \\d+ (s|min) left/"
        ".test(document.querySelector('.job .status')?.textContent || '')"
    )
    # A second job waits behind the first, and says so.
    page.fill("#prompt", "a short cup")
    page.fill("#set-steps", FAST["steps"])
    page.click("#submit")
    page.wait_for_selector("li.job >> nth=1")
    short_job = page.locator(f"li.job[data-job='{card(page).get_attribute('data-job')}']")
    assert short_job.locator("h3").inner_text() == "a short cup"
    page.wait_for_function(
        "() => document.querySelector('.job .status').textContent === 'Queued: next in line'"
    )

    long_job.get_by_role("button", name="Cancel").click()
    page.wait_for_selector("li.job[data-state=cancelled]")
    assert long_job.locator(".status").inner_text() == "Cancelled."
    state = requests.get(
        f"{server.url}/v1/jobs/{long_job.get_attribute('data-job')}", headers=auth(), timeout=10
    ).json()
    assert state["state"] == "cancelled" and state["step"] < 1000
    page.wait_for_selector("li.job[data-ready=true]", timeout=120_000)  # the next one ran
    assert short_job.get_attribute("data-ready") == "true"


def test_drop_and_paste_pick_the_picture(page, server, example_image):
    open_page(page, server)
    page.check("input[name=source][value=prompt]")
    png = list(example_image.read_bytes())
    for event in ("drop", "paste"):
        page.evaluate(
            """([kind, bytes]) => {
                const data = new DataTransfer();
                const name = kind + '.png';
                data.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
                const target = kind === 'drop' ? document.getElementById('drop-zone') : document;
                const init = {bubbles: true, cancelable: true};
                target.dispatchEvent(kind === 'drop'
                    ? new DragEvent('drop', {...init, dataTransfer: data})
                    : new ClipboardEvent('paste', {...init, clipboardData: data}));
            }""",
            [event, png],
        )
        assert page.locator("#image-name").inner_text().startswith(f"{event}.png")
        assert page.locator("input[name=source][value=image]").is_checked()
        assert page.locator("#image-thumb").is_visible()


def test_a_bad_file_and_a_bad_value_each_show_one_line(page, server, jobs_dir, tmp_path):
    open_page(page, server)
    before = job_folders(jobs_dir)
    bad = tmp_path / "holiday.png"
    bad.write_text("not a picture at all")
    page.set_input_files("#image", str(bad))
    fill_settings(page, FAST)
    page.click("#submit")
    message = wait_message(page)
    assert "not a recognised image" in message, message  # the core's ImageInputError
    assert "\n" not in message

    # Larger than the server's upload limit: refused before a byte is sent.
    page.evaluate(
        """(size) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(size)], 'huge.png', {type: 'image/png'}));
            document.getElementById('drop-zone').dispatchEvent(
                new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: data}));
        }""",
        defaults.MAX_FILE_BYTES + 1,
    )
    page.click("#submit")
    limit = f"{defaults.MAX_FILE_BYTES / 2**20:.1f} MB"
    assert wait_message(page) == f"huge.png is larger than this server's limit of {limit}: " + (
        "pick a smaller picture."
    )

    page.set_input_files("#image", str(REPO_ROOT / "examples" / "stool.png"))
    page.fill("#set-target_faces", str(defaults.MAX_TARGET_FACES + 1))
    clear_message(page)
    page.click("#submit")
    message = wait_message(page)
    assert "target faces" in message and str(defaults.MAX_TARGET_FACES) in message.replace(",", "")
    assert "\n" not in message
    assert page.locator("li.job").count() == 0
    assert job_folders(jobs_dir) == before


def test_a_wrong_token_says_not_authorised_and_queues_nothing(page, server, jobs_dir):
    before = job_folders(jobs_dir)
    open_page(page, server, token="wrong-token-0123456789")
    assert page.locator("#message").inner_text().startswith("Not authorised")
    assert page.locator("#job-form").is_hidden()
    assert axe_violations(page) == []

    # The right token, then a changed one (the server's token was rotated): submit refused.
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#job-form:not([hidden])")
    page.set_input_files("#image", str(REPO_ROOT / "examples" / "stool.png"))
    page.click("#change-token")
    page.fill("#token", "another-wrong-token-0123")
    clear_message(page)
    page.click("#token-form button[type=submit]")
    assert wait_message(page).startswith("Not authorised")
    clear_message(page)
    page.click("#submit")
    assert wait_message(page).startswith("Not authorised")
    assert page.locator("li.job").count() == 0
    assert job_folders(jobs_dir) == before
    assert requests.get(f"{server.url}/v1/health", headers=auth(), timeout=10).json()["queue"] == 0


def test_without_the_viewer_script_the_page_says_why_and_still_downloads(page, server):
    page.route("**" + web.VIEWER_URL, lambda route: route.fulfill(status=404, body="missing"))
    open_page(page, server)
    page.wait_for_selector("#preview-note:not([hidden])")
    assert "No 3D preview" in page.locator("#preview-note").inner_text()
    page.check("input[name=source][value=prompt]")
    page.fill("#prompt", "a cup")
    fill_settings(page, FAST)
    page.click("#submit")
    page.wait_for_selector("li.job[data-ready=true]", timeout=120_000)
    assert card(page).locator("model-viewer").count() == 0
    with page.expect_download() as download:
        card(page).locator("button[data-file='a_cup.glb']").click()
    assert Path(download.value.path()).read_bytes()[:4] == b"glTF"


def test_chromium_is_on_the_set_up_list():
    from blender_img3d.core.system import requirements

    assert requirements.DEBIAN_DEV_PACKAGES["chromium"] == CHROMIUM.name
    assert any(r.startswith("playwright==") for r in requirements.DEV_REQUIREMENTS)
    npm = {r.rpartition("@")[0] for r in requirements.NPM_REQUIREMENTS}
    assert {"axe-core", "@google/model-viewer"} <= npm


def test_loopback_without_a_token_needs_no_token_prompt(browser, surface_text_model_dir, tmp_path):
    process = ServerProcess(
        [*("--model", str(surface_text_model_dir), "--text-model", str(surface_text_model_dir))]
        + ["--device", "cpu"],
        tmp_path / "serve.log",
    )
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(process.url + "/")
        page.wait_for_selector("#job-form:not([hidden])")
        assert page.locator("#token-form").is_hidden()
        assert page.locator("#change-token").is_hidden()
        page.check("input[name=source][value=prompt]")
        page.fill("#prompt", "a vase")
        fill_settings(page, FAST)
        page.click("#submit")
        page.wait_for_selector("li.job[data-ready=true]", timeout=120_000)
        assert page.evaluate("() => sessionStorage.length") == 0
    finally:
        context.close()
        process.stop()
