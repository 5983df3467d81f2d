"""core/vendor.py: the Blender-mode install plan, its checks, pip runs, and sys.path activation."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from blender_img3d.core.errors import CancelledError, DependencyError
from blender_img3d.core.progress import Phase
from blender_img3d.core.system import hardware, vendor
from blender_img3d.core.system.requirements import (
    BUNDLED_WHEELS,
    LIBRARY_PINS,
    TORCH_DEPENDENCIES,
    TORCH_REQUIREMENT,
    name_of,
)

CPU = hardware.choose_build(hardware.Machine("Linux", "x86_64"))


def offline_plan(tmp_path: Path, *requirements: str) -> vendor.InstallPlan:
    """A plan pip can try without any index: it fails fast and touches no network."""
    plan = vendor.make_plan(
        tmp_path / "vendor",
        numpy_version="1.26.4",
        packages=requirements,
        required_free_bytes=0,
    )
    return dataclasses.replace(plan, extra_pip_args=("--no-index",))


def test_plan_installs_torch_then_the_pinned_libraries_with_numpy_pinned(tmp_path):
    plan = vendor.make_plan(tmp_path / "vendor", build=CPU, numpy_version="1.26.4")
    assert [run.requirements for run in plan.runs] == [
        (TORCH_REQUIREMENT,),
        LIBRARY_PINS[vendor.abi_tag()],
    ]
    assert plan.constraints[0] == "numpy==1.26.4" and set(TORCH_DEPENDENCIES) <= set(
        plan.constraints
    )
    assert plan.vendor_dir == (tmp_path / "vendor").resolve()
    assert plan.required_free_bytes == hardware.REQUIRED_FREE_BYTES["cpu"]
    assert not any(name_of(req) == "numpy" for req in plan.requirements)  # Blender's stays


def test_plan_defaults_to_the_running_pythons_numpy(tmp_path):
    import numpy

    plan = vendor.make_plan(tmp_path, build=CPU)
    assert plan.constraints[0] == f"numpy=={numpy.__version__}"


def test_bundled_wheels_already_present_are_left_out_of_the_plan(tmp_path):
    present = vendor.available_at_pin(BUNDLED_WHEELS)  # the dev venv has them all
    assert "scipy==1.17.1" in present
    assert vendor.available_at_pin(["scipy==0.0.1", "img3d-nothing==1.0"]) == ()
    plan = vendor.make_plan(tmp_path, build=CPU, numpy_version="1.26.4", skip=present)
    names = {name_of(req) for req in plan.requirements}
    assert "scipy" not in names and "ezdxf" not in names and "diffusers" in names


def test_cuda_plan_asks_for_more_disk_and_changes_the_fingerprint(tmp_path):
    cuda = hardware.choose_build(hardware.Machine("Linux", "x86_64"), "cuda")
    plan = vendor.make_plan(tmp_path, build=cuda, numpy_version="1.26.4")
    assert plan.required_free_bytes >= 6 * 1024**3
    cpu_plan = vendor.make_plan(tmp_path, build=CPU, numpy_version="1.26.4")
    assert plan.fingerprint() != cpu_plan.fingerprint()


def test_the_vendor_folder_is_keyed_by_abi_and_platform(tmp_path):
    assert vendor.vendor_key((3, 11), "win-amd64") == "cp311-win_amd64"
    assert vendor.vendor_key((3, 13), "macosx-14.0-arm64") == "cp313-macosx_arm64"
    assert vendor.vendor_key((3, 11), "linux-x86_64") == "cp311-linux_x86_64"
    assert vendor.vendor_dir_for(tmp_path).name == vendor.vendor_key()


def test_plan_survives_its_json_round_trip_for_the_child_process(tmp_path):
    plan = vendor.make_plan(tmp_path, build=CPU, numpy_version="1.26.4")
    again = vendor.plan_from_json(plan.to_json())
    assert again == plan and again.fingerprint() == plan.fingerprint()


def test_pip_commands_use_raw_progress_only_where_pip_has_it(tmp_path):
    plan = vendor.make_plan(tmp_path, build=CPU, numpy_version="1.26.4")
    new = plan.pip_commands("/blender/python", tmp_path / "c.txt")
    old = plan.pip_commands("/blender/python", tmp_path / "c.txt", raw_progress=False)
    assert all(c[c.index("--progress-bar") + 1] == "raw" for c in new)
    assert all(c[c.index("--progress-bar") + 1] == "off" for c in old)
    assert new[0][:4] == ["/blender/python", "-m", "pip", "install"]
    assert all(c[c.index("--constraint") + 1] == str(tmp_path / "c.txt") for c in new)
    assert "--user" not in new[0]
    assert vendor.pip_version() >= vendor.RAW_PROGRESS_PIP  # the dev venv's pip


def test_python_311_and_313_are_supported_and_others_refused_with_the_versions():
    with pytest.raises(vendor.InstallError, match=r"3\.11 .*4\.2 LTS.* or 3\.13 .*5\.1.*3\.12\.0"):
        vendor.check_python((3, 12, 0))
    vendor.check_python((3, 11, 9))
    vendor.check_python((3, 13, 1))
    assert issubclass(vendor.InstallError, DependencyError)


def test_offline_is_refused_naming_blenders_setting_and_the_headless_flag():
    with pytest.raises(vendor.OfflineError, match="Allow Online Access"):
        vendor.require_online(False)
    with pytest.raises(vendor.OfflineError, match="--online-mode"):
        vendor.require_online(False, headless=True)
    vendor.require_online(True)


def test_install_refuses_offline_before_contacting_anything(tmp_path, monkeypatch):
    contacted = []
    monkeypatch.setattr(vendor.urllib.request, "urlopen", lambda *a, **k: contacted.append(a))
    monkeypatch.setattr(vendor.subprocess, "Popen", lambda *a, **k: contacted.append(a))
    plan = vendor.make_plan(tmp_path / "v", build=CPU, numpy_version="1.26.4")
    with pytest.raises(vendor.OfflineError, match="--online-mode"):
        vendor.install(plan, online=False, headless=True)
    assert contacted == [] and not plan.vendor_dir.exists()


def test_windows_paths_past_260_are_refused_with_a_short_folder_offered(tmp_path):
    deep = Path(
        "C:/Users/artist/AppData/Roaming/Blender Foundation/Blender/4.2/extensions/"
        ".user/user_default/blender_img3d/vendor/cp311-win_amd64"
    )
    with pytest.raises(vendor.InstallError, match=r"too deep for Windows.*Img3D"):
        vendor.check_path_lengths(deep, windows=True, long_paths=lambda: False)
    vendor.check_path_lengths(deep, windows=True, long_paths=lambda: True)
    vendor.check_path_lengths(
        Path("C:/Img3D/cp311-win_amd64"), windows=True, long_paths=lambda: False
    )
    vendor.check_path_lengths(deep, windows=False)


def test_too_little_disk_space_is_refused_before_installing(tmp_path, monkeypatch):
    usage = types.SimpleNamespace(total=10 * 1024**3, used=0, free=512 * 1024**2)
    monkeypatch.setattr(vendor.shutil, "disk_usage", lambda _path: usage)
    with pytest.raises(vendor.InstallError, match=r"Not enough disk space.*0\.5 GB free.*1\.5 GB"):
        vendor.check_disk_space(tmp_path / "not" / "yet", hardware.REQUIRED_FREE_BYTES["cpu"])


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
    monkeypatch.setattr(vendor, "check_network", lambda *_: pytest.fail("must not go online"))
    lines: list[str] = []
    assert vendor.install(plan, output=lines.append) is False
    assert "up to date" in lines[-1]
    other = offline_plan(tmp_path, "six==1.17.0")
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


def test_raw_pip_progress_becomes_byte_progress_like_the_model_download():
    calls = []
    progress = vendor.PipProgress(expected_bytes=1000, progress=lambda *a: calls.append(a))
    fractions = [
        progress.feed(line)
        for line in (
            "Collecting torch==2.13.0",
            "  Downloading torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl (600 B)",
            "Progress 0 of 600",
            "Progress 300 of 600",
            "Progress 600 of 600",
            "Collecting filelock",
            "Progress 0 of 200",
            "Progress 200 of 200",
            "Installing collected packages: filelock, torch",
            "Successfully installed filelock-4.3.1 torch-2.13.0+cpu",
            vendor.DONE_LINE,
        )
    ]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    downloads = [c for c in calls if c[0] == Phase.DOWNLOADING]
    assert downloads[1] == (Phase.DOWNLOADING, 300, 1000)
    assert downloads[-1] == (Phase.DOWNLOADING, 800, 1000)  # two files banked
    assert calls[-1] == (Phase.INSTALLING, 1, 1)
    more = vendor.PipProgress(expected_bytes=100)
    more.feed("Progress 500 of 500")
    assert more.total_bytes == 500  # the estimate grows instead of overflowing
    progress.feed(f"{vendor.ERROR_PREFIX}Not enough disk space")
    assert progress.error == "Not enough disk space"


def test_script_mode_reports_errors_on_one_marked_line(tmp_path):
    plan = vendor.make_plan(
        tmp_path / "v", build=CPU, numpy_version="1.26.4", required_free_bytes=10**18
    )
    command, env = vendor.subprocess_command(plan)
    assert command[command.index("-m") + 1] == "blender_img3d.core.system.vendor"
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    last = completed.stdout.strip().splitlines()[-1]
    assert last.startswith(vendor.ERROR_PREFIX) and "Not enough disk space" in last


def test_uninstall_removes_only_our_folders(tmp_path):
    ours = tmp_path / "cp311-linux_x86_64"
    (ours / "torch").mkdir(parents=True)
    assert vendor.uninstall(ours) is True and not ours.exists()
    assert vendor.uninstall(ours) is False
    precious = tmp_path / "Documents"
    (precious / "thesis").mkdir(parents=True)
    with pytest.raises(vendor.InstallError, match="doesn't look like an Img3D"):
        vendor.uninstall(precious)
    assert (precious / "thesis").is_dir()


def test_a_failed_check_carries_the_error_and_what_to_do(tmp_path):
    result = vendor.check_install(tmp_path / "empty", "cpu", python=sys.executable)
    # The dev venv has torch, so the check passes here: a CPU line with the version.
    assert result.ok and result.summary.startswith("CPU OK: ") and "torch 2.13.0" in result.summary
    broken = vendor.check_install(tmp_path, "cuda")  # no GPU on this machine
    assert not broken.ok and "is_available" in broken.error
    assert broken.summary.startswith("CUDA check failed") and "NVIDIA driver" in broken.summary
    assert "Visual C++" in vendor.advice_for("ImportError: DLL load failed while importing", "cpu")


def test_the_check_result_is_kept_beside_the_install_and_read_back(tmp_path):
    result = vendor.CheckResult(
        True, "cuda", "2.13.0+cu128", "NVIDIA GeForce RTX 4070", 12 * 1024**3
    )
    assert result.summary == "CUDA OK: NVIDIA GeForce RTX 4070, 12 GB (torch 2.13.0+cu128)"
    assert vendor.load_check(tmp_path) is None
    vendor.save_check(tmp_path, result)
    assert vendor.load_check(tmp_path) == result
    line = vendor.CHECK_PREFIX + json.dumps(result.to_dict())
    assert vendor.parse_check_line(line) == result and vendor.parse_check_line("pip: x") is None
