"""Smoke test on the Blender LTS lines that share Python 3.11: bpy 4.2.* and 4.5.* from PyPI.

Opt-in (``pytest -m lts``): each bpy wheel is ~0.35 GB, downloaded once into
``build/lts/bpy-<line>`` (a venv per line). The venv holds only bpy; a ``.pth``
file appends the main venv's site-packages (torch, diffusers, ...), so the
runtime packages are not installed twice and CI time stays what it was. The
venv's own bpy comes first on the path, so the old Blender is what runs.
Each line installs the built zip with Blender's installer, enables it,
generates on a tiny model and exports the four formats.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("lts_probe.py")
LTS_LINES = ("4.2", "4.5")

pytestmark = [pytest.mark.lts, pytest.mark.slow]


def lts_python(line: str) -> Path:
    """A venv with ``bpy==<line>.*`` and a .pth to the main venv's packages; made once."""
    venv = REPO_ROOT / "build" / "lts" / f"bpy-{line}"
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    stamp = venv / ".img3d-ready"
    if stamp.is_file():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    completed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", f"bpy=={line}.*"],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if completed.returncode != 0:
        pytest.skip(f"bpy=={line}.* could not be installed from PyPI: {completed.stderr[-500:]}")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "img3d_main_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    stamp.write_text("ok\n")
    return python


@pytest.fixture(scope="module")
def lts_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    return build_extension.build_for_this_platform(tmp_path_factory.mktemp("dist"))


@pytest.mark.parametrize("line", LTS_LINES)
def test_lts_blender_installs_generates_and_exports(
    line, lts_zip, surface_text_model_dir, tmp_path
):
    python = lts_python(line)
    completed = subprocess.run(
        [str(python), str(PROBE), str(lts_zip), str(surface_text_model_dir), str(tmp_path)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    lines = [text for text in completed.stdout.splitlines() if text.startswith("__REPORT__")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(lines[-1][len("__REPORT__") :])
    assert report["blender"].startswith(line), report  # the LTS bpy ran, not the main venv's
    assert report["install"] == ["FINISHED"] and report["enabled"]
    assert report["generate"] == ["FINISHED"] and report["objects"] and report["faces"] > 0
    for fmt, (outcome, size) in report["exports"].items():
        assert outcome == ["FINISHED"] and size > 0, (fmt, report)
