"""core/vendor.py: the Blender-mode install plan, its checks, pip runs, and sys.path activation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from blender_img3d.core.errors import CancelledError, DependencyError
from blender_img3d.core.system import vendor
from blender_img3d.core.system.requirements import RUNTIME_REQUIREMENTS


def offline_plan(tmp_path: Path, *requirements: str) -> vendor.InstallPlan:
    """A plan pip can try without any index: it fails fast and touches no network."""
    plan = vendor.make_plan(
        tmp_path / "vendor",
        numpy_version="1.26.4",
        requirements=requirements,
        required_free_bytes=0,
    )
    return dataclasses.replace(plan, extra_pip_args=("--no-index",))


def test_plan_installs_the_runtime_list_with_numpy_pinned_to_the_given_version(tmp_path):
    plan = vendor.make_plan(tmp_path / "vendor", numpy_version="1.26.4")
    assert plan.requirements == RUNTIME_REQUIREMENTS
    assert plan.constraints == ("numpy==1.26.4",)
    assert plan.vendor_dir == (tmp_path / "vendor").resolve()
    assert plan.variant == "cpu" and plan.required_free_bytes == vendor.REQUIRED_FREE_BYTES["cpu"]
    assert not any(req.startswith("numpy") for req in plan.requirements)


def test_plan_defaults_to_the_running_pythons_numpy(tmp_path):
    import numpy

    assert vendor.make_plan(tmp_path).constraints == (f"numpy=={numpy.__version__}",)


def test_cuda_plan_asks_for_more_disk_and_unknown_builds_are_refused(tmp_path):
    cuda = vendor.make_plan(tmp_path, numpy_version="1.26.4", variant="CUDA")
    assert cuda.variant == "cuda" and cuda.required_free_bytes >= 6 * 1024**3
    assert cuda.fingerprint() != vendor.make_plan(tmp_path, numpy_version="1.26.4").fingerprint()
    with pytest.raises(vendor.InstallError, match="Unknown torch build 'rocm'"):
        vendor.make_plan(tmp_path, variant="rocm")


def test_pip_command_targets_the_vendor_folder_with_the_constraints_file(tmp_path):
    plan = vendor.make_plan(
        tmp_path / "v", numpy_version="1.26.4", torch_index_url=vendor.PYTORCH_INDEX_URLS["cuda"]
    )
    command = plan.pip_command("/blender/python", tmp_path / "c.txt")
    assert command[:4] == ["/blender/python", "-m", "pip", "install"]
    assert command[command.index("--target") + 1] == str(plan.vendor_dir)
    assert command[command.index("--constraint") + 1] == str(tmp_path / "c.txt")
    assert command[command.index("--extra-index-url") + 1].endswith("/cu128")
    assert command[-len(RUNTIME_REQUIREMENTS) :] == list(RUNTIME_REQUIREMENTS)
    assert "--user" not in command


def test_wrong_python_is_refused_with_the_version_needed():
    with pytest.raises(vendor.InstallError, match=r"Python 3\.11 is required.*3\.13\.0"):
        vendor.check_python((3, 13, 0))
    vendor.check_python((3, 11, 9))
    assert issubclass(vendor.InstallError, DependencyError)


def test_too_little_disk_space_is_refused_before_installing(tmp_path, monkeypatch):
    usage = types.SimpleNamespace(total=10 * 1024**3, used=0, free=512 * 1024**2)
    monkeypatch.setattr(vendor.shutil, "disk_usage", lambda _path: usage)
    with pytest.raises(vendor.InstallError, match=r"Not enough disk space.*0\.5 GB free.*1\.5 GB"):
        vendor.check_disk_space(tmp_path / "not" / "yet", vendor.REQUIRED_FREE_BYTES["cpu"])


def test_no_network_is_reported_before_pip_runs(tmp_path, monkeypatch):
    def offline(*_args, **_kwargs):
        raise vendor.urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(vendor.urllib.request, "urlopen", offline)
    with pytest.raises(vendor.InstallError, match="Can't reach the Python package index"):
        vendor.install(offline_plan(tmp_path, "six==1.16.0"))
    assert not (tmp_path / "vendor" / vendor.STAMP_NAME).exists()


def test_a_stamped_plan_is_not_installed_again(tmp_path, monkeypatch):
    plan = offline_plan(tmp_path, "six==1.16.0")
    plan.vendor_dir.mkdir(parents=True)
    plan.stamp_file.write_text(f'{{"fingerprint": "{plan.fingerprint()}"}}')
    monkeypatch.setattr(vendor, "check_network", lambda: pytest.fail("must not go online"))
    lines: list[str] = []
    assert vendor.install(plan, output=lines.append) is False
    assert "up to date" in lines[-1]
    other = dataclasses.replace(plan, requirements=("six==1.17.0",))
    assert not vendor.stamp_matches(other)


def test_a_failing_pip_run_raises_and_leaves_no_stamp(tmp_path):
    plan = offline_plan(tmp_path, "img3d-no-such-package==0.0.1")
    lines: list[str] = []
    with pytest.raises(vendor.InstallError, match="pip failed"):
        vendor.install(plan, output=lines.append, check_index=False)
    assert any("img3d-no-such-package" in line for line in lines)  # pip's own words came through
    assert not plan.stamp_file.exists()
    assert (plan.vendor_dir / ".img3d-constraints.txt").read_text() == "numpy==1.26.4\n"


def test_cancel_stops_pip_and_raises_cancelled(tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError, match="run it again"):
        vendor.install(
            offline_plan(tmp_path, "six==1.16.0"), cancel=cancel, check_index=False, output=str
        )


def test_activate_appends_the_folder_once_and_makes_its_modules_importable(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "img3d_vendored_probe.py").write_text("ANSWER = 42\n")
    assert vendor.activate(tmp_path / "missing") is False
    assert vendor.activate(tmp_path) is True
    assert vendor.activate(tmp_path) is True
    assert sys.path.count(str(tmp_path.resolve())) == 1
    assert sys.path.index(str(tmp_path.resolve())) == len(sys.path) - 1  # Blender's own win
    import img3d_vendored_probe

    assert img3d_vendored_probe.ANSWER == 42
    sys.modules.pop("img3d_vendored_probe")


def test_pip_output_drives_a_monotonic_progress_estimate():
    progress = vendor.PipProgress(expected_packages=4)
    fractions = [
        progress.feed(line)
        for line in (
            "Collecting six==1.16.0",
            "  Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)",
            "Collecting idna",
            "Installing collected packages: six, idna",
            "Successfully installed idna-3.7 six-1.16.0",
        )
    ]
    assert fractions == sorted(fractions)
    assert 0 < fractions[0] < fractions[2] < fractions[3] < fractions[4] == 1.0
    progress.feed(f"{vendor.ERROR_PREFIX}Not enough disk space")
    assert progress.error == "Not enough disk space"


def test_script_mode_reports_errors_on_one_marked_line(tmp_path):
    plan = vendor.make_plan(
        tmp_path / "v", numpy_version="1.26.4", variant="cuda", required_free_bytes=10**18
    )
    command, env = vendor.subprocess_command(plan)
    assert (
        command[command.index("-m") + 1] == "blender_img3d.core.system.vendor"
        and "--cuda" in command
    )
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    last = completed.stdout.strip().splitlines()[-1]
    assert last.startswith(vendor.ERROR_PREFIX) and "Not enough disk space" in last
