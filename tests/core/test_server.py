"""The GPU server for real: ``serve`` in a child process on 127.0.0.1, tiny models, HTTP calls.

One server (token, queue of 8, its own jobs folder) serves the module; each
test leaves it idle. Round trips compare against a local run of the same
request: same latents, same meshes, byte-identical files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

pytest.importorskip("fastapi", reason="the [server] extra is part of the dev set-up")
pytest.importorskip("uvicorn")

from blender_img3d.cli.main import main  # noqa: E402
from blender_img3d.core import backend as backends  # noqa: E402
from blender_img3d.core.errors import CancelledError, ConfigError, ServerError  # noqa: E402
from blender_img3d.core.progress import Phase  # noqa: E402
from blender_img3d.core.server import protocol  # noqa: E402
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request  # noqa: E402
from tests.fixtures.server import ServerProcess  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
QUEUE = 8
FAST = {"steps": 2, "grid_size": 16, "target_faces": 0}


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token.txt"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def server(surface_image_model_dir, surface_text_model_dir, token_file, jobs_dir, tmp_path_factory):
    process = ServerProcess(
        [
            "--model",
            str(surface_image_model_dir),
            "--text-model",
            str(surface_text_model_dir),
            "--device",
            "cpu",
            "--token-file",
            str(token_file),
            "--max-queue",
            str(QUEUE),
            "--jobs-dir",
            str(jobs_dir),
        ],
        tmp_path_factory.mktemp("server-log") / "serve.log",
    )
    yield process
    process.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def remote(server) -> backends.Backend:
    return backends.get_backend("remote", url=server.url, token=TOKEN)


def local_generation(model_dir: Path, **values) -> GenerationSettings:
    return GenerationSettings(model=str(model_dir), device="cpu", **values)


def wait_final(url: str, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/v1/jobs/{job_id}", headers=auth(), timeout=10).json()
        if status["state"] in protocol.FINAL_STATES:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end")


def job_folders(jobs_dir: Path) -> set[str]:
    return {path.name for path in jobs_dir.iterdir()}


def comparable(path: Path) -> bytes:
    """A file's bytes, with a STEP header's time stamp (the second it was written) masked."""
    import re

    return re.sub(rb"'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d'", b"'<time>'", path.read_bytes())


def phase_sequence(events: list[tuple[str, int, int]]) -> list[str]:
    """The phases in the order they began."""
    return [phase for i, (phase, *_) in enumerate(events) if i == 0 or events[i - 1][0] != phase]


def assert_results_match(remote_result, local_result) -> None:
    assert np.array_equal(remote_result.latents, local_result.latents)
    assert len(remote_result.meshes) == len(local_result.meshes)
    for got, want in zip(remote_result.meshes, local_result.meshes):
        assert got == want  # vertices, faces, colours, name, metadata
    assert remote_result.settings == local_result.settings
    assert remote_result.model_source == local_result.model_source


# --- round trips ---------------------------------------------------------------------
def test_image_job_round_trip_equals_a_local_run(
    server, surface_image_model_dir, example_image, tmp_path
):
    def request(folder: Path) -> Request:
        folder.mkdir()
        return Request(
            image=example_image,
            generation=local_generation(surface_image_model_dir, steps=3, grid_size=16, seed=5),
            mesh=MeshSettings(target_faces=0),
            outputs=[folder / "stool.glb", folder / "stool.obj"],
            latents_out=folder / "stool.npy",
        )

    events: list[tuple[str, int, int]] = []
    got = remote(server).submit(
        request(tmp_path / "remote"), progress=lambda *event: events.append(event)
    )
    local_events: list[tuple[str, int, int]] = []
    want = backends.get_backend("local").submit(
        request(tmp_path / "local"), progress=lambda *event: local_events.append(event)
    )
    assert_results_match(got, want)
    for name in ("stool.glb", "stool.obj", "stool.mtl", "stool.npy"):
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert [p.name for p in got.outputs] == ["stool.glb", "stool.obj"]
    assert got.model_input is not None and got.model_input.size == want.model_input.size

    assert events[0][0] == Phase.QUEUED  # the job is queued before the worker takes it
    events = [event for event in events if event[0] != Phase.QUEUED]
    sampling = [step for phase, step, _total in events if phase == Phase.SAMPLING]
    assert sampling == sorted(sampling) and sampling[-1] == 3
    assert phase_sequence(events) == phase_sequence(local_events)  # the pipeline's own order


def test_prompt_job_through_the_cli_writes_the_same_files_as_a_local_run(
    server, surface_text_model_dir, token_file, tmp_path, capsys
):
    def run(folder: str, *extra: str) -> Path:
        out = tmp_path / folder
        out.mkdir()
        args = [
            "generate",
            "--prompt",
            "a lamp",
            "--model",
            str(surface_text_model_dir),
            "--device",
            "cpu",
            "--steps",
            "2",
            "--grid-size",
            "16",
            "--batch",
            "2",
            "--seed",
            "3",
            "--out",
            str(out / "lamp.glb"),
            "--out",
            str(out / "lamp.stp"),
            "--report",
            str(out / "lamp.json"),
            "--quiet",
            *extra,
        ]
        assert main(args) == 0, capsys.readouterr().err
        return out

    remote_out = run("remote", "--server", server.url, "--token-file", str(token_file))
    local_out = run("local")
    names = sorted(p.name for p in local_out.iterdir())
    assert names == ["lamp.json", "lamp_0.glb", "lamp_0.stp", "lamp_1.glb", "lamp_1.stp"]
    assert sorted(p.name for p in remote_out.iterdir()) == names
    for name in names[1:]:
        assert comparable(remote_out / name) == comparable(local_out / name), name
    reports = [json.loads((out / "lamp.json").read_text()) for out in (remote_out, local_out)]
    for report in reports:
        report.pop("timings")
        for variant in report["variants"]:
            variant["metrics"].pop("timings", None)
    assert reports[0]["outputs"] == [
        str(remote_out / n) for n in ("lamp_0.glb", "lamp_0.stp", "lamp_1.glb", "lamp_1.stp")
    ]
    reports[0].pop("outputs"), reports[1].pop("outputs")
    assert reports[0] == reports[1]


def test_events_stream_every_status_in_order_until_the_end(server):
    response = requests.post(
        f"{server.url}/v1/jobs",
        json={"prompt": "a cup", "settings": {**FAST, "steps": 4}},
        headers=auth(),
        timeout=30,
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    snapshots = []
    with requests.get(
        f"{server.url}/v1/jobs/{job_id}/events", headers=auth(), stream=True, timeout=60
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith(b"data:"):
                snapshots.append(json.loads(line[5:]))
    seqs = [s["seq"] for s in snapshots]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert snapshots[-1]["state"] == "finished"
    assert [s["step"] for s in snapshots if s["phase"] == "sampling"][-1] == 4
    assert {"state", "phase", "step", "total", "eta", "position", "error"} <= set(snapshots[0])
    zipped = requests.get(f"{server.url}/v1/jobs/{job_id}/result", headers=auth(), timeout=30)
    assert zipped.headers["content-type"] == "application/zip"
    # replaying from the start gives the same stream
    with requests.get(
        f"{server.url}/v1/jobs/{job_id}/events",
        headers={**auth(), "Last-Event-ID": "-1"},
        stream=True,
        timeout=60,
    ) as replay:
        again = [json.loads(line[5:]) for line in replay.iter_lines() if line.startswith(b"data:")]
    assert again[-1] == snapshots[-1]


# --- cancel ---------------------------------------------------------------------------
def test_cancel_mid_sampling_stops_within_one_step_and_frees_the_worker(server):
    response = requests.post(
        f"{server.url}/v1/jobs",
        json={"prompt": "a tower", "settings": {**FAST, "steps": 1000}},
        headers=auth(),
        timeout=30,
    )
    job_id = response.json()["id"]
    with requests.get(
        f"{server.url}/v1/jobs/{job_id}/events", headers=auth(), stream=True, timeout=60
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith(b"data:"):
                snapshot = json.loads(line[5:])
                if snapshot["phase"] == "sampling" and snapshot["step"] >= 3:
                    break
    at_cancel = requests.delete(f"{server.url}/v1/jobs/{job_id}", headers=auth(), timeout=30)
    assert at_cancel.status_code == 202
    final = wait_final(server.url, job_id)
    assert final["state"] == "cancelled" and final["error"] is None
    assert final["phase"] == "sampling"
    assert final["step"] <= at_cancel.json()["step"] + 1 < 1000
    result = requests.get(f"{server.url}/v1/jobs/{job_id}/result", headers=auth(), timeout=30)
    assert result.status_code == 409 and "cancelled" in result.json()["error"]

    nxt = requests.post(
        f"{server.url}/v1/jobs",
        json={"prompt": "a cup", "settings": FAST},
        headers=auth(),
        timeout=30,
    )
    assert wait_final(server.url, nxt.json()["id"])["state"] == "finished"


def test_remote_backend_cancel_reaches_the_server(server):
    cancel = threading.Event()

    def progress(phase, step, _total):
        if phase == Phase.SAMPLING and step >= 2:
            cancel.set()

    request = Request(prompt="a bridge", generation=GenerationSettings(steps=1000, grid_size=16))
    with pytest.raises(CancelledError):
        remote(server).submit(request, progress=progress, cancel=cancel)
    assert requests.get(f"{server.url}/v1/health", headers=auth(), timeout=10).json()[
        "running"
    ] in (0, 1)
    health = requests.get(f"{server.url}/v1/health", headers=auth(), timeout=10).json()
    deadline = time.monotonic() + 30
    while health["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
        health = requests.get(f"{server.url}/v1/health", headers=auth(), timeout=10).json()
    assert health["running"] == 0 and health["queue"] == 0


# --- auth -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "basic"],
)
def test_missing_or_wrong_token_is_401_and_does_no_work(server, jobs_dir, headers):
    before = job_folders(jobs_dir)
    for method, path in (
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/" + "0" * 32),
        ("GET", "/v1/jobs/" + "0" * 32 + "/events"),
        ("GET", "/v1/jobs/" + "0" * 32 + "/result"),
        ("DELETE", "/v1/jobs/" + "0" * 32),
    ):
        response = requests.request(
            method,
            server.url + path,
            headers=headers,
            timeout=10,
            json={"prompt": "a lamp", "settings": FAST} if method == "POST" else None,
        )
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["error"]
    assert job_folders(jobs_dir) == before
    health = requests.get(f"{server.url}/v1/health", headers=auth(), timeout=10)
    assert health.status_code == 200 and health.json()["auth"] is True
    assert health.json()["queue"] == 0
    log = server.log()
    assert '"POST /v1/jobs" 401' in log  # each request is logged...
    assert TOKEN not in log and "wrong-token" not in log  # ...never its credentials


def test_remote_backend_with_a_wrong_token_says_so_in_one_line(server):
    backend = backends.get_backend("remote", url=server.url, token="not-the-token-at-all")
    with pytest.raises(ServerError, match="refused the token") as caught:
        backend.submit(Request(prompt="a lamp"))
    assert "\n" not in str(caught.value)


def test_non_loopback_bind_without_a_token_refuses_to_start(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "Refusing to listen on 0.0.0.0 without a token" in err and "--token-file" in err


def test_short_token_files_are_refused(tmp_path, capsys):
    weak = tmp_path / "weak.txt"
    weak.write_text("1234")
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--token-file", str(weak)]) == 1
    assert "at least 16 characters" in capsys.readouterr().err


# --- bad input --------------------------------------------------------------------------
def post_image(server, data: bytes, settings: dict, name: str = "x.png"):
    files = {"image": (name, data), "settings": (None, json.dumps(settings))}
    return requests.post(f"{server.url}/v1/jobs", files=files, headers=auth(), timeout=60)


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("oversized", 413, "larger than this server's limit of 50.0 MB"),
        ("corrupt", 422, "truncated or corrupt"),
        ("unknown", 422, "Unknown setting 'colour'"),
        ("range", 422, "steps must be between 1 and 1000, got 0"),
        ("type", 422, "Setting 'seed' must be a whole number, got 'many'"),
        ("nested", 422, "Unknown setting 'mesh.steps'"),
        ("both", 422, "either an image or a prompt"),
        ("bad-output", 422, "Can't write chair.fbx: use one of .glb"),
    ],
)
def test_bad_input_is_a_4xx_with_the_message_and_nothing_is_queued(
    server, jobs_dir, example_image, kind, status, message
):
    png = example_image.read_bytes()
    before = job_folders(jobs_dir)
    if kind == "oversized":
        response = post_image(server, os.urandom(50 * 2**20 + 4096), FAST)
    elif kind == "corrupt":
        response = post_image(server, png[: len(png) // 3], FAST)
    elif kind == "unknown":
        response = post_image(server, png, {**FAST, "colour": "red"})
    elif kind == "range":
        response = post_image(server, png, {**FAST, "steps": 0})
    elif kind == "type":
        response = post_image(server, png, {**FAST, "seed": "many"})
    elif kind == "nested":
        response = post_image(server, png, {"mesh": {"steps": 3}})
    elif kind == "both":
        response = post_image(server, png, {**FAST, "prompt": "a chair"})
    else:
        response = post_image(server, png, {**FAST, "outputs": ["chair.fbx"]})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "\n" not in response.json()["error"]
    assert str(jobs_dir) not in response.json()["error"]  # no server path in a message
    assert job_folders(jobs_dir) == before
    assert requests.get(f"{server.url}/v1/health", headers=auth(), timeout=10).json()["queue"] == 0


def test_json_jobs_and_unknown_jobs_get_clear_errors(server):
    url = f"{server.url}/v1/jobs"
    no_prompt = requests.post(url, json={"settings": FAST}, headers=auth(), timeout=10)
    assert no_prompt.status_code == 422 and "prompt" in no_prompt.json()["error"]
    text = requests.post(url, data=b"steps=3", headers={**auth(), "content-type": "text/plain"})
    assert text.status_code == 415
    broken = requests.post(url, data=b"{", headers={**auth(), "content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    missing = requests.get(f"{url}/{'a' * 32}", headers=auth(), timeout=10)
    assert missing.status_code == 404 and "No job" in missing.json()["error"]
    traversal = requests.get(f"{url}/..%2F..%2Fetc", headers=auth(), timeout=10)
    assert traversal.status_code == 404


def test_uploaded_file_names_stay_inside_the_job_folder(server, jobs_dir, example_image):
    response = post_image(server, example_image.read_bytes(), FAST, name="../../../evil/stool.png")
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert wait_final(server.url, job_id)["state"] == "finished"
    assert not (jobs_dir.parent / "evil").exists()
    assert {p.name for p in (jobs_dir / job_id).iterdir()} == {"result.zip"}


# --- load -----------------------------------------------------------------------------------
def test_four_clients_five_jobs_each_against_a_queue_of_eight(server, surface_text_model_dir):
    warm = requests.post(
        f"{server.url}/v1/jobs", json={"prompt": "warm", "settings": FAST}, headers=auth()
    )
    wait_final(server.url, warm.json()["id"])
    rss_before = server.rss_bytes()
    outcomes: list[tuple[int, int, object]] = []  # (status, seed, id or None)
    lock = threading.Lock()

    def client(index: int) -> None:
        for job in range(5):
            seed = index * 10 + job
            response = requests.post(
                f"{server.url}/v1/jobs",
                json={"prompt": "a vase", "settings": {**FAST, "seed": seed}},
                headers=auth(),
                timeout=60,
            )
            job_id = response.json().get("id") if response.status_code == 202 else None
            with lock:
                outcomes.append((response.status_code, seed, job_id))
            if response.status_code == 429:
                assert "queue is full" in response.json()["error"]
                assert response.headers["retry-after"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, *_ in outcomes)
    assert len(outcomes) == 20 and set(statuses) <= {202, 429}
    accepted = [(seed, job_id) for status, seed, job_id in outcomes if status == 202]
    assert QUEUE <= len(accepted) < 20, statuses  # the queue filled, then refused

    import io
    import zipfile

    local = backends.get_backend("local")
    for seed, job_id in accepted:
        assert wait_final(server.url, job_id)["state"] == "finished"
        archive = requests.get(f"{server.url}/v1/jobs/{job_id}/result", headers=auth(), timeout=30)
        latents = np.load(
            io.BytesIO(zipfile.ZipFile(io.BytesIO(archive.content)).read("latents.npy"))
        )
        want = local.submit(
            Request(
                prompt="a vase",
                generation=local_generation(
                    surface_text_model_dir, steps=2, grid_size=16, seed=seed
                ),
                mesh=MeshSettings(target_faces=0),
            )
        )
        assert np.array_equal(latents, want.latents), seed
    rss_after = server.rss_bytes()
    print(
        f"\nserver RSS before {rss_before / 2**20:.1f} MiB, after {len(accepted)} jobs "
        f"{rss_after / 2**20:.1f} MiB ({len(outcomes) - len(accepted)} refused with 429)"
    )
    assert rss_after - rss_before < 64 * 2**20


# --- failures on the client's side ----------------------------------------------------------
def test_a_server_that_is_not_there_is_one_clear_line(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = backends.get_backend("remote", url=f"127.0.0.1:{port}")
    with pytest.raises(ServerError, match=rf"Can't reach the server at http://127.0.0.1:{port}"):
        backend.submit(Request(prompt="a lamp"))
    code = main(
        [
            "generate",
            "--prompt",
            "a lamp",
            "--out",
            str(tmp_path / "a.glb"),
            "--server",
            f"http://127.0.0.1:{port}",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Can't reach the server" in err
    assert not (tmp_path / "a.glb").exists()


def test_online_access_off_blocks_every_call():
    backend = backends.get_backend("remote", url="http://127.0.0.1:9", online=lambda: False)
    with pytest.raises(ServerError, match="Online access is off"):
        backend.health()


def test_serve_without_the_server_packages_says_what_to_install():
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fastapi', 'uvicorn'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from blender_img3d.cli.main import main\n"
        "sys.exit(main(['serve', '--port', '0']))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert completed.returncode == 1
    assert "Missing fastapi, uvicorn" in completed.stderr and "[server]" in completed.stderr


def test_wire_settings_round_trip_and_server_owned_ones_are_not_sent():
    request = Request(
        prompt="a chair",
        generation=GenerationSettings(
            steps=7, seed=9, guidance=4.5, model="/secret/model", device="cuda", batch=2
        ),
        mesh=MeshSettings(target_faces=123, size=2.0),
        outputs=[Path("/home/me/chair.glb"), Path("C:/out/chair.stp")],
    )
    settings = protocol.settings_from_request(request)
    assert not set(settings) & protocol.SERVER_OWNED
    assert settings["outputs"] == ["chair.glb", "chair.stp"]
    json.dumps(settings)
    rebuilt, options = protocol.request_from_settings(settings, prompt="a chair")
    assert rebuilt.generation.steps == 7 and rebuilt.generation.guidance == 4.5
    assert rebuilt.mesh == request.mesh and rebuilt.generation.model is None
    assert options["outputs"] == ["chair.glb", "chair.stp"]
    with pytest.raises(ConfigError, match="outputs"):
        protocol.request_from_settings({"outputs": "chair.glb"})


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\chair.png", "chair.png"),
        ("..", "image"),
        ("CON.png", "image.png"),
        ("a\x00b;rm -rf.png", "a_b_rm -rf.png"),
        ("", "image"),
        ("stool.png", "stool.png"),
    ],
)
def test_safe_filename(raw, safe):
    assert protocol.safe_filename(raw) == safe


def test_server_extra_in_pyproject_is_the_pinned_list():
    import tomllib

    from blender_img3d.core.system.requirements import DEV_REQUIREMENTS, SERVER_REQUIREMENTS

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["server"] == list(SERVER_REQUIREMENTS)
    assert set(SERVER_REQUIREMENTS) <= set(DEV_REQUIREMENTS)


# --- retention (the store alone, no HTTP, no model) ---------------------------------------------
def test_ended_jobs_are_deleted_after_the_retention_time(tmp_path):
    from blender_img3d.core.errors import EmptySurfaceError
    from blender_img3d.core.server.config import ServerConfig
    from blender_img3d.core.server.jobstore import JobStore

    class NoSurface:
        def submit(self, request, progress=None, cancel=None):
            progress("sampling", 1, 1)
            raise EmptySurfaceError("No surface: try another seed.")

    config = ServerConfig(jobs_dir=tmp_path / "jobs", keep_results_seconds=60, warm_modes=())
    store = JobStore(config, devices=["cpu"], backend_factory=NoSurface).start()
    try:
        record = store.new_job()
        request, options = protocol.request_from_settings(FAST, prompt="a lamp")
        store.prepare(record, request, options)
        store.enqueue(record)
        deadline = time.monotonic() + 30
        while not record.final and time.monotonic() < deadline:
            time.sleep(0.01)
        status = store.status(record)
        assert status["state"] == "failed" and status["error_type"] == "EmptySurfaceError"
        assert status["error"] == "No surface: try another seed."
        assert store.sweep(now=record.ended + 59) == []
        assert store.get(record.id) is record and record.folder.is_dir()
        assert store.sweep(now=record.ended + 60) == [record.id]
        assert store.get(record.id) is None and not record.folder.exists()
    finally:
        store.stop()
    assert (tmp_path / "jobs").is_dir()  # a jobs folder the user gave is kept


def test_tls_with_uvicorn_certificate_options(tmp_path, monkeypatch):
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl makes the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    tls = ServerProcess(
        ["--device", "cpu", "--tls-cert", str(cert), "--tls-key", str(key)],
        tmp_path / "tls.log",
    )
    try:
        assert tls.url.startswith("https://127.0.0.1:")
        untrusted = backends.get_backend("remote", url=tls.url)
        with pytest.raises(ServerError, match="TLS with .* failed.*REQUESTS_CA_BUNDLE"):
            untrusted.health()
        assert backends.get_backend("remote", url=tls.url, verify=str(cert)).health()["version"]
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # what the README tells CLI users
        assert backends.get_backend("remote", url=tls.url).health()["api"] == "v1"
    finally:
        tls.stop()


def test_a_failed_job_comes_back_as_the_core_error_it_was():
    from blender_img3d.core.errors import EmptySurfaceError

    error = protocol.error_from_body(
        {"error": "No surface: try another seed.", "type": "EmptySurfaceError"}, "fallback"
    )
    assert type(error) is EmptySurfaceError and str(error) == "No surface: try another seed."
    assert type(protocol.error_from_body({"error": "x", "type": "KeyError"}, "f")) is ServerError
    assert str(protocol.error_from_body("<html>", "The server answered 502.")) == (
        "The server answered 502."
    )


def test_pixel_arrays_travel_as_npy_and_match_a_local_run(
    server, surface_image_model_dir, example_image
):
    from PIL import Image

    # What Blender's remote mode sends: float sRGB pixels, rows bottom-up.
    pixels = np.asarray(Image.open(example_image).convert("RGBA"), dtype=np.float32)[::-1] / 255

    def request() -> Request:
        return Request(
            image=pixels.copy(),
            name="stool",
            generation=local_generation(surface_image_model_dir, steps=2, grid_size=16, seed=1),
            mesh=MeshSettings(target_faces=0),
        )

    got = remote(server).submit(request())
    want = backends.get_backend("local").submit(request())
    assert_results_match(got, want)
    assert got.meshes[0].name == "stool"
