"""The add-on in every Blender line an artist can have, with only what the add-on installs.

``pytest -m blender_matrix`` (run by ``.ci/run``): for each line of
``BLENDER_LINES`` (4.2 LTS, 4.5 LTS, 5.0 on Python 3.11; 5.1, 5.2 LTS, 5.3 on 3.13)
a bare venv with only that ``bpy`` (``environments.py``, cached outside the clone)
runs ``probe.py``: Blender's installer takes the zip built from this tree and the
add-on must really be enabled; remote generation from a picture and a prompt
against a loopback ``serve`` with the vendor folder empty (no torch, no Pillow);
then Install Dependencies through the add-on's own installer from a local
wheelhouse, and the artist's loop: System Check, Preview Input, Generate from a
picture and a prompt, Generate Again, Variations, Re-decode, Bake Texture, the four
exports and the mesh tools. cp313 has no CPU torch on this machine, so those lines
install the libraries only and run the loop through the server (see
``environments.py``). Each case is one JSON line, printed and appended to
``$IMG3D_MATRIX_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from blender_img3d.core.system.requirements import BLENDER_LINES
from tests.fixtures.server import ServerProcess
from tests.matrix import environments

pytestmark = [pytest.mark.blender_matrix, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("probe.py")
TOKEN = "matrix-token-0123456789abcdef"
PROBE_TIMEOUT = 1500

REMOTE_CASES = (
    "install_zip",
    "remote_picture",
    "remote_prompt",
    "remote_generate_again",
    "remote_variations",
    "remote_exports",
    "remote_mesh_tools",
    "draw_panels",
    "preview_needs_install",
)
LOCAL_CASES = (
    "install_dependencies",
    "system_check",
    "preview_input",
    "preview_busy_photo",
    "bake_texture",
    "exports",
    "mesh_tools",
)
TORCH_CASES = ("local_picture", "local_prompt", "generate_again", "variations", "redecode")


@pytest.fixture(scope="module")
def matrix_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    return build_extension.build_for_this_platform(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def matrix_server(surface_image_model_dir, surface_text_model_dir, tmp_path_factory):
    """A real ``serve`` on 127.0.0.1 with the tiny models, behind a token."""
    folder = tmp_path_factory.mktemp("matrix-server")
    token_file = folder / "token.txt"
    token_file.write_text(TOKEN)
    server = ServerProcess(
        [
            "--model",
            str(surface_image_model_dir),
            "--text-model",
            str(surface_text_model_dir),
            "--device",
            "cpu",
            "--token-file",
            str(token_file),
        ],  # fmt: skip
        folder / "serve.log",
    )
    yield server
    server.stop()


def record(cases: list[dict]) -> None:
    report = os.environ.get("IMG3D_MATRIX_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as stream:
            for line in cases:
                slim = {key: value for key, value in line.items() if key != "traceback"}
                stream.write(json.dumps(slim, default=str) + "\n")


@pytest.mark.parametrize("line", list(BLENDER_LINES))
def test_the_artists_loop_in_a_bare_blender(
    line, matrix_zip, matrix_server, surface_image_model_dir, surface_text_model_dir, tmp_path
):
    abi = BLENDER_LINES[line][1]
    start = time.monotonic()
    try:
        python = environments.bare_blender(line)
        house = environments.wheelhouse(abi)
    except environments.UnavailableError as exc:
        pytest.skip(f"Blender {line}: {exc}")
    local = environments.torch_available(abi)
    config = {
        "line": line,
        "zip": str(matrix_zip),
        "image": str(REPO_ROOT / "examples" / "stool.png"),
        "ui_layout": str(REPO_ROOT / "tests" / "blender" / "ui_layout.py"),
        "models": {"image": str(surface_image_model_dir), "text": str(surface_text_model_dir)},
        "server": {"url": matrix_server.url, "token": TOKEN},
        "wheelhouse": str(house),
        # Without torch the installer is given the libraries alone (its "packages" run).
        "packages": None if local else environments.library_pins(abi),
        "local_generation": local,
        "out_dir": str(tmp_path),
    }
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    # Blender's user folder: the extension and what its installer puts there (about
    # 1 GB a line), removed as soon as the probe ends; its JSON lines say what happened.
    home = Path(tempfile.mkdtemp(prefix=f"img3d-matrix-{line}-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(BLENDER_USER_RESOURCES=str(home), HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1")
    try:
        completed = subprocess.run(
            [str(python), str(PROBE), str(config_file)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            cwd=tmp_path,
            env=env,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    cases = [
        json.loads(text[len("__CASE__") :])
        for text in completed.stdout.splitlines()
        if text.startswith("__CASE__")
    ]
    cases.append(
        {"line": line, "case": "total", "ok": completed.returncode == 0,
         "seconds": round(time.monotonic() - start, 1)}
    )  # fmt: skip
    record(cases)
    for case in cases:
        print(json.dumps({k: v for k, v in case.items() if k != "traceback"}, default=str))
    tail = completed.stdout[-3000:] + completed.stderr[-3000:]
    by_name = {case["case"]: case for case in cases}
    expected = REMOTE_CASES + LOCAL_CASES + (TORCH_CASES if local else ())
    missing = [name for name in expected if name not in by_name]
    assert not missing, f"Blender {line}: cases that never ran: {missing}\n{tail}"
    failed = [by_name[name] for name in expected if not by_name[name]["ok"]]
    assert not failed, f"Blender {line}: " + json.dumps(failed, indent=1, default=str)[:6000]
    assert by_name["install_zip"]["bpy"].startswith(BLENDER_LINES[line][0]), by_name["install_zip"]
    assert completed.returncode == 0, tail
