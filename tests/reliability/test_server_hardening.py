"""The studio server against a hostile LAN: one test per failure issue #27 found.

Each test names the numbered failure it covers and would fail on the server
before that issue (see RELIABILITY.md, "The studio server"). Servers are real
``serve`` child processes on 127.0.0.1; every loop is bounded and every socket
is closed by the test that opened it.
"""

from __future__ import annotations

import io
import json
import resource
import socket
import stat
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

pytest.importorskip("fastapi", reason="the [server] extra is part of the dev set-up")
pytest.importorskip("uvicorn")

from blender_img3d.cli.main import main  # noqa: E402
from blender_img3d.core.server import protocol  # noqa: E402
from blender_img3d.core.server.logsafety import BURST  # noqa: E402
from blender_img3d.core.version import __version__  # noqa: E402
from tests.fixtures.server import REPO_ROOT, ServerProcess  # noqa: E402

ANNA = "anna-token-0123456789abcdef"
BEN = "ben-token-0123456789abcdefgh"
FAST = {"steps": 2, "grid_size": 16, "target_faces": 0}
HALF_OPEN = 2000  # the figure; the descriptor limit of the server's child is 1024
LEFTOVER = "f" * 32  # a job folder a killed run left behind


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def studio(surface_text_model_dir, tmp_path_factory):
    """Two clients, a queue of 1, 3 s for headers, 2 s of body silence, 32 connections at most."""
    root = tmp_path_factory.mktemp("studio")
    tokens = root / "tokens.txt"
    tokens.write_text(f"# name token\nanna {ANNA}\n\nben {BEN}\n")
    tokens.chmod(0o600)
    jobs = root / "jobs"
    (jobs / LEFTOVER / "input").mkdir(parents=True)
    (jobs / LEFTOVER / "input" / "artwork.png").write_bytes(b"client artwork")
    (jobs / "notes.txt").write_text("not a job: kept")
    process = ServerProcess(
        [
            "--text-model", str(surface_text_model_dir), "--model", str(root / "no-model"),
            "--device", "cpu", "--tokens-file", str(tokens), "--jobs-dir", str(jobs),
            "--max-queue", "1", "--header-timeout", "3", "--max-connections", "32",
            "--body-timeout", "2",
        ],
        root / "serve.log",
    )  # fmt: skip
    process.jobs_dir = jobs
    yield process
    process.stop()


def post_prompt(server, token: str, settings: dict, prompt: str = "a lamp"):
    body = {"prompt": prompt, "settings": settings}
    return requests.post(f"{server.url}/v1/jobs", json=body, headers=as_(token), timeout=30)


def wait_state(server, token: str, job_id: str, states, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{server.url}/v1/jobs/{job_id}", headers=as_(token), timeout=10)
        if status.json()["state"] in states:
            return status.json()
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}")


def cancel(server, token: str, job_id: str) -> None:
    requests.delete(f"{server.url}/v1/jobs/{job_id}", headers=as_(token), timeout=10)
    wait_state(server, token, job_id, protocol.FINAL_STATES)


def long_job(server) -> str:
    """A job that keeps the one worker busy until cancelled."""
    job_id = post_prompt(server, ANNA, {**FAST, "steps": 1000}).json()["id"]
    wait_state(server, ANNA, job_id, {"running"})
    return job_id


def half_open(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that each sent half a request line and headers."""
    host, port = url.split("//")[1].split(":")
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(sock)
    except OSError:
        close_all(sockets)
        raise
    return sockets


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def health_seconds(url: str, tries: int = 5) -> list[float]:
    """How long /v1/health took, each try on a fresh connection."""
    took = []
    for _ in range(tries):
        started = time.perf_counter()
        response = requests.get(f"{url}/v1/health", timeout=10, headers={"Connection": "close"})
        took.append(time.perf_counter() - started)
        assert response.status_code == 200
    return took


# --- 1. half-sent requests exhaust the descriptors -----------------------------------------------
def test_1_health_answers_while_2000_half_open_connections_are_held(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * HALF_OPEN + 512:
        pytest.skip(f"the hard open-file limit ({hard}) can't hold {HALF_OPEN} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HALF_OPEN + 256), hard))
    # The server starts with a stock 1024 soft limit: before, 1,100 connections took it down.
    server = ServerProcess(
        ["--device", "cpu", "--header-timeout", "60"], tmp_path / "serve.log", open_files=1024
    )  # held for the whole measurement, not dropped at the 10 s default deadline
    sockets: list[socket.socket] = []
    try:
        sockets = half_open(server.url, HALF_OPEN)
        took = health_seconds(server.url)
        print(
            f"\n{HALF_OPEN} half-open connections held: /v1/health median "
            f"{statistics.median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms"
        )
        # The bar is 1 s (measured: a few ms, at most ~0.4 s on a loaded machine);
        # the slowest of five may meet a noisy neighbour, so it only has to stay under 5 s.
        assert statistics.median(took) < 1.0
        assert max(took) < 5.0
        assert server.process.poll() is None
    finally:
        close_all(sockets)
        server.stop()
    assert "out of system resource" not in server.log_path.read_text()


def test_1_half_sent_headers_are_dropped_at_the_header_deadline(studio):
    (sock,) = half_open(studio.url, 1)
    try:
        assert closed_by_server(sock, 15)  # the 3 s deadline, not our 15 s
    finally:
        sock.close()
    assert requests.get(f"{studio.url}/v1/health", timeout=10).status_code == 200


def test_1_a_body_that_stops_arriving_is_dropped_and_its_job_folder_removed(studio):
    before = {p.name for p in studio.jobs_dir.iterdir()}
    host, port = studio.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ANNA.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\""
        )  # fmt: skip
        assert closed_by_server(sock, 15)  # the 2 s body deadline, not our 15 s
    time.sleep(0.5)
    assert {p.name for p in studio.jobs_dir.iterdir()} == before
    assert "Traceback" not in studio.log()


def test_1_at_the_connection_cap_the_oldest_idle_connection_makes_room(studio):
    sockets = half_open(studio.url, 100)  # --max-connections 32
    try:
        # well inside the 3 s header deadline: the oldest ones were closed to make room
        assert all(closed_by_server(sock, 1.0) for sock in sockets[:60])
        health_seconds(studio.url, tries=3)
    finally:
        close_all(sockets)


# --- 2. the log can be forged and flooded --------------------------------------------------------
def test_2_control_characters_in_a_path_cannot_forge_a_log_line(studio):
    forged = "/v1/x%0D%0AINFO blender_img3d: job deadbeef finished%1B[2J"
    requests.get(studio.url + forged, timeout=10)
    time.sleep(0.2)
    log = studio.log()
    assert "\\r\\nINFO blender_img3d: job deadbeef finished\\x1b[2J" in log
    assert not any(line.startswith("INFO blender_img3d: job deadbeef") for line in log.splitlines())
    assert "\x1b" not in log


def test_2_repeated_protocol_errors_are_rate_limited(studio):
    host, port = studio.url.split("//")[1].split(":")
    for _ in range(60):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            sock.settimeout(5)
            sock.recv(1024)
    time.sleep(0.2)
    warnings = studio.log().count("Invalid HTTP request received")
    assert 1 <= warnings <= BURST + 1


# --- 3. pictures were decoded before the queue was checked ---------------------------------------
def big_png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` × ``height`` pixels, with one empty data chunk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))


def post_image(server, token: str, data: bytes, settings: dict, name: str = "x.png"):
    files = {"image": (name, data), "settings": (None, json.dumps(settings))}
    return requests.post(f"{server.url}/v1/jobs", files=files, headers=as_(token), timeout=60)


def test_3_a_full_queue_refuses_an_image_before_reading_it(studio):
    running = long_job(studio)
    queued = post_prompt(studio, ANNA, FAST).json()["id"]  # the one queue place
    try:
        refused = post_image(studio, ANNA, big_png_header(8000, 7999), FAST)
        assert refused.status_code == 429, refused.text  # before: 422 after decoding it
        assert "queue is full" in refused.json()["error"]
    finally:
        cancel(studio, ANNA, queued)
        cancel(studio, ANNA, running)


def test_3_a_declared_size_over_the_cap_is_refused_from_the_header(studio):
    response = post_image(studio, ANNA, big_png_header(10_000, 10_000), FAST)
    assert response.status_code == 422
    assert "10000×10000" in response.json()["error"] and "max_pixels" in response.json()["error"]


# --- 4. client artwork stays on disk -------------------------------------------------------------
def test_4_the_previous_runs_job_folders_are_swept_at_start(studio):
    assert not (studio.jobs_dir / LEFTOVER).exists()
    assert (studio.jobs_dir / "notes.txt").read_text() == "not a job: kept"


def test_4_an_upload_cancelled_while_queued_is_deleted_at_once(studio, example_image):
    running = long_job(studio)
    try:
        queued = post_image(studio, ANNA, example_image.read_bytes(), FAST)
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["id"]
        assert any((studio.jobs_dir / job_id / "input").iterdir())
        cancel(studio, ANNA, job_id)
        assert not (studio.jobs_dir / job_id / "input").exists()
    finally:
        cancel(studio, ANNA, running)


def test_4_results_are_private_and_name_no_server_path(studio):
    job_id = post_prompt(studio, ANNA, {**FAST, "outputs": ["lamp.glb", "lamp.obj"]}).json()["id"]
    assert wait_state(studio, ANNA, job_id, protocol.FINAL_STATES)["state"] == "finished"
    folder = studio.jobs_dir / job_id
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "result.zip").stat().st_mode) == 0o600
    zipped = requests.get(f"{studio.url}/v1/jobs/{job_id}/result", headers=as_(ANNA), timeout=30)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        for name in (protocol.ARCHIVE_REPORT, protocol.ARCHIVE_DOCUMENT):
            text = archive.read(name).decode()
            assert str(studio.jobs_dir) not in text, name
        report = json.loads(archive.read(protocol.ARCHIVE_REPORT))
    assert report["outputs"] and all("/" not in name for name in report["outputs"])


def test_4_sigterm_leaves_no_job_folder(surface_text_model_dir, tmp_path):
    jobs = tmp_path / "jobs"
    server = ServerProcess(
        ["--text-model", str(surface_text_model_dir), "--device", "cpu", "--jobs-dir", str(jobs)],
        tmp_path / "serve.log",
    )
    try:
        response = requests.post(
            f"{server.url}/v1/jobs", json={"prompt": "a cup", "settings": {**FAST, "steps": 1000}}
        )
        assert response.status_code == 202
    finally:
        server.stop()  # SIGTERM with the job running
    assert server.process.returncode is not None
    assert [p.name for p in jobs.iterdir() if protocol.JOB_ID_PATTERN.match(p.name)] == []


# --- 5. 500s and silent acceptance of bad input --------------------------------------------------
def npy_declaring(shape: tuple[int, ...]) -> bytes:
    """A .npy file whose header declares ``shape`` (float32) and holds 16 bytes of data."""
    from numpy.lib import format as npy

    stream = io.BytesIO()
    npy.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return stream.getvalue() + bytes(16)


def truncated_settings_body(png: bytes) -> tuple[bytes, str]:
    boundary = "cut-here-0123"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="settings"\r\n\r\n'
            '{"steps": 2, "grid_size": 1'
        ).encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("deep-json", 400, "nests deeper than"),
        ("huge-int", 400, "too large"),
        ("surrogate-prompt", 400, "'prompt' holds a lone UTF-16 surrogate"),
        ("surrogate-name", 400, "'name' holds a lone UTF-16 surrogate"),
        ("npy-huge-shape", 422, "declares shape (100000, 100000, 4)"),
        ("truncated-settings", 400, "ends inside the 'settings' field"),
        ("unknown-unit", 422, "units: Unknown length unit 'furlong'"),
        ("json-too-large", 413, "shorten the prompt"),
    ],
)
def test_5_bad_input_is_a_4xx_naming_the_field_and_nothing_is_queued(
    studio, example_image, case, status, message
):
    png = example_image.read_bytes()  # a whole picture: only the part under test is wrong
    before = {p.name for p in studio.jobs_dir.iterdir()}
    url = f"{studio.url}/v1/jobs"
    json_type = {**as_(ANNA), "content-type": "application/json"}
    if case == "deep-json":
        response = requests.post(url, data="[" * 100_000 + "]" * 100_000, headers=json_type)
    elif case == "huge-int":
        body = '{"prompt": "a lamp", "settings": {"seed": ' + "9" * 5000 + "}}"
        response = requests.post(url, data=body, headers=json_type)
    elif case == "surrogate-prompt":
        response = requests.post(url, data='{"prompt": "a \\ud800 lamp"}', headers=json_type)
    elif case == "surrogate-name":
        files = {"image": ("a.png", png), "settings": '{"name": "\\udc80"}'}
        response = requests.post(url, files=files, headers=as_(ANNA))
    elif case == "npy-huge-shape":
        response = post_image(studio, ANNA, npy_declaring((100_000, 100_000, 4)), FAST, "a.npy")
    elif case == "truncated-settings":
        body, content_type = truncated_settings_body(png)
        response = requests.post(
            url, data=body, headers={**as_(ANNA), "content-type": content_type}
        )
    elif case == "unknown-unit":
        response = post_prompt(studio, ANNA, {**FAST, "units": "furlong"})
    else:
        response = post_prompt(studio, ANNA, FAST, prompt="x" * 300_000)
    assert response.status_code == status, response.text
    assert message in response.json()["error"], response.json()
    assert "\n" not in response.json()["error"]
    assert {p.name for p in studio.jobs_dir.iterdir()} == before


# --- 6. unauthenticated reconnaissance -----------------------------------------------------------
def test_6_health_tells_a_stranger_only_ok_and_the_version(studio):
    anonymous = requests.get(f"{studio.url}/v1/health", timeout=10)
    assert anonymous.json() == {"status": "ok", "version": __version__}
    known = requests.get(f"{studio.url}/v1/health", headers=as_(BEN), timeout=10).json()
    assert known["auth"] is True and "workers" in known and "queue" in known
    wrong = requests.get(f"{studio.url}/v1/health", headers=as_("x" * 20), timeout=10)
    assert wrong.status_code == 401


def test_6_the_api_schema_needs_the_token(studio):
    assert requests.get(f"{studio.url}/v1/openapi.json", timeout=10).status_code == 401
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert requests.get(studio.url + path, timeout=10).status_code == 404
    schema = requests.get(f"{studio.url}/v1/openapi.json", headers=as_(ANNA), timeout=10)
    assert schema.status_code == 200 and "/v1/jobs" in schema.json()["paths"]


# --- 7. operator mistakes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-results", "nan"], "--keep-results must be a positive number of minutes"),
        (["--keep-results", "inf"], "--keep-results must be a positive number of minutes"),
        (["--max-upload-mb", "nan"], "--max-upload-mb must be a number of megabytes"),
        (["--max-upload-mb", "inf"], "--max-upload-mb must be a number of megabytes"),
        (["--header-timeout", "inf"], "--header-timeout must be a positive number of seconds"),
        (["--max-connections", "3"], "--max-connections must be 16 or more"),
    ],
)
def test_7_impossible_options_exit_2_with_one_line_before_loading(args, message):
    completed = serve_until_it_exits(args)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.count("\n") == 1 and message in completed.stderr
    assert "Loading" not in completed.stdout and "Ready" not in completed.stdout


def serve_until_it_exits(args: list[str]) -> subprocess.CompletedProcess:
    """``serve`` in a child; one that starts anyway (before: it did) is stopped at the timeout."""
    command = [sys.executable, "-m", "blender_img3d", "serve", "--port", "0", "--device", "cpu"]
    try:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired as timed_out:
        raise AssertionError(f"serve {' '.join(args)} started: {timed_out.stdout!r}") from None


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl makes the test certificates")
    root = tmp_path_factory.mktemp("tls")
    for name in ("a", "b"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(root / f"{name}.key"), "-out", str(root / f"{name}.pem"),
             "-subj", "/CN=127.0.0.1"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    (root / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    return {p.name: p for p in root.iterdir()}


@pytest.mark.parametrize(
    ("cert", "key"), [("a.pem", "b.key"), ("garbage.pem", "a.key"), ("a.pem", "garbage.pem")]
)
def test_7_unusable_tls_files_exit_2_before_ready(certificates, cert, key):
    completed = serve_until_it_exits(
        ["--tls-cert", str(certificates[cert]), "--tls-key", str(certificates[key])]
    )
    assert completed.returncode == 2 and completed.stderr.count("\n") == 1, completed.stderr
    assert "TLS files" in completed.stderr and "Ready" not in completed.stdout


# --- 8. one shared token: anyone could read or cancel any job ------------------------------------
def test_8_another_clients_job_is_404_and_cannot_be_cancelled(studio):
    job_id = post_prompt(studio, ANNA, {**FAST, "steps": 1000}).json()["id"]
    try:
        for method, path in (
            ("GET", ""),
            ("GET", "/events"),
            ("GET", "/result"),
            ("GET", "/files/result.json"),  # the browser page's one-file route
            ("DELETE", ""),
        ):
            response = requests.request(
                method, f"{studio.url}/v1/jobs/{job_id}{path}", headers=as_(BEN), timeout=10
            )
            assert response.status_code == 404, (method, path)
            assert "No job" in response.json()["error"]
        mine = requests.get(f"{studio.url}/v1/jobs/{job_id}", headers=as_(ANNA), timeout=10)
        assert mine.status_code == 200 and mine.json()["state"] in ("queued", "running")
    finally:
        cancel(studio, ANNA, job_id)


def test_8_tokens_files_are_checked_line_by_line(tmp_path, capsys):
    bad = tmp_path / "tokens.txt"
    for text, message in (
        (f"anna {ANNA}\nben {ANNA}\n", "another client's token"),
        ("anna short\n", "at least 16 characters"),
        (f"anna {ANNA} extra\n", "line 1"),
        ("# nobody\n", "names no client"),
    ):
        bad.write_text(text)
        assert main(["serve", "--port", "0", "--tokens-file", str(bad)]) == 1
        assert message in capsys.readouterr().err


def test_8_token_comparison_checks_every_client():
    from blender_img3d.core.server.auth import Authenticator

    auth = Authenticator({"anna": ANNA, "ben": BEN})
    assert auth.identify(f"Bearer {BEN}").name == "ben"
    assert auth.identify(f"bearer  {ANNA} ").name == "anna"
    for header in (None, "", ANNA, f"Basic {ANNA}", f"Bearer {ANNA[:-1]}", "Bearer \udc80"):
        assert auth.identify(header) is None, header


def test_log_guard_escapes_and_counts_what_it_dropped():
    import logging

    from blender_img3d.core.server.logsafety import LogGuard

    now = [0.0]
    guard = LogGuard(burst=2, window=10, clock=lambda: now[0])

    def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("x", level, __file__, 1, message, None, None)

    kept = [r for r in (record("boom\r\nfake") for _ in range(5)) if guard.filter(r)]
    assert [r.getMessage() for r in kept] == ["boom\\r\\nfake"] * 2
    assert guard.filter(record("info lines are never dropped", logging.INFO))
    now[0] = 11.0
    later = record("boom\r\nfake")
    assert guard.filter(later) and "3 more like this" in later.getMessage()


def test_5_a_npy_header_is_checked_against_the_bytes_it_came_with(tmp_path):
    """Only the header is read: 16 bytes declaring a 256 MB array are refused, never allocated."""
    from blender_img3d.core.errors import ImageInputError
    from blender_img3d.core.server.uploads import check_image_header

    path = tmp_path / "pixels.npy"
    path.write_bytes(npy_declaring((4000, 4000, 4)))
    with pytest.raises(ImageInputError, match="truncated"):
        check_image_header(path)
    path.write_bytes(npy_declaring((2, 2)))
    check_image_header(path)  # a whole small array passes
