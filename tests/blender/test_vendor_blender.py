"""Blender mode of the dependency install: the plan, online access, one real offline install.

The real install runs the whole plan (torch, then the pinned libraries) from a
local wheelhouse with ``--no-index`` while Blender's online access is off, then
the child-process check imports torch and multiplies on the CPU, then
Uninstall removes every file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import bpy
import numpy
import pytest

from blender_img3d.core.system import requirements, vendor

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
import vendor_install  # noqa: E402

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.fixture
def online_access():
    system = bpy.context.preferences.system
    before = system.use_online_access
    system.use_online_access = True
    yield
    system.use_online_access = before


@pytest.fixture
def offline():
    system = bpy.context.preferences.system
    before = system.use_online_access
    system.use_online_access = False
    yield
    system.use_online_access = before


@pytest.fixture
def nothing_contacted(monkeypatch):
    """Fail the test if anything opens a URL or a socket, or starts pip."""
    import socket

    contacted: list = []

    def refuse(*args, **_kwargs):
        contacted.append(args)
        raise AssertionError(f"contacted the network / started pip: {args[:2]}")

    monkeypatch.setattr(vendor.urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(vendor, "_run_streaming", refuse)
    return contacted


@pytest.fixture
def clean_vendor_folder(installed_extension):
    """The extension's vendor folder, emptied and taken off sys.path after the test."""
    root = Path(bpy.utils.extension_path_user(installed_extension, path="vendor", create=True))
    yield vendor.vendor_dir_for(root)
    for name in [name for name in sys.modules if name == "six" or name.startswith("six.")]:
        del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if not entry.startswith(str(root))]
    shutil.rmtree(root, ignore_errors=True)


def _download(house: Path, requirements_: list[str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-d", str(house), *extra, *requirements_],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """A folder with every wheel of this platform's plan (bundled ones excepted), CPU torch."""
    house = tmp_path_factory.mktemp("wheelhouse")
    libraries = vendor.library_requirements(
        vendor.abi_tag(), skip=vendor.available_at_pin(requirements.BUNDLED_WHEELS)
    )
    wanted = [*requirements.TORCH_DEPENDENCIES, *(req.split(";")[0] for req in libraries)]
    wanted = [req for req in wanted if not req.startswith("colorama")]  # Windows only
    completed = _download(house, wanted)
    if completed.returncode != 0:
        pytest.skip(f"can't fill the test wheelhouse from the package index: {completed.stderr}")
    # The CPU torch (the configured indexes may give it; else PyTorch's CPU index).
    if _download(house, [requirements.TORCH_REQUIREMENT]).returncode != 0 or not list(
        house.glob("torch-*+cpu-*.whl")
    ):
        for wheel in house.glob("torch-*.whl"):
            wheel.unlink()
        if _download(house, [requirements.TORCH_REQUIREMENT], "--index-url", CPU_INDEX).returncode:
            pytest.skip(f"no CPU torch wheel reachable (tried the pip config and {CPU_INDEX})")
    return house


def test_blender_plan_targets_the_abi_keyed_vendor_folder_with_blenders_numpy(
    installed_extension, blender_user_home
):
    assert vendor_install.installed_extension_package() == installed_extension
    args = vendor_install.parse_blender_args(["--build", "cuda"])
    plan = vendor_install.blender_plan(args)
    expected = blender_user_home / "extensions" / ".user" / "user_default" / "blender_img3d"
    assert plan.vendor_dir == (expected / "vendor" / vendor.vendor_key()).resolve()
    assert plan.vendor_dir.name == f"cp311-{vendor.platform_key()}"
    assert plan.constraints[0] == f"numpy=={numpy.__version__}"  # the numpy bpy imports
    assert plan.runs[0].requirements == (requirements.TORCH_REQUIREMENT,)
    assert plan.runs[0].index_url.startswith("https://download.pytorch.org/whl/cu")
    assert plan.required_free_bytes >= 6 * 1024**3
    # The bundled exporter wheels are on the path already: not installed twice.
    names = {requirements.name_of(req) for req in plan.requirements}
    assert not names & {requirements.name_of(req) for req in requirements.BUNDLED_WHEELS}
    # The preferences button computes the same plan inside the installed extension.
    operators = sys.modules[f"{installed_extension}.blender.operators.dependencies"]
    assert operators.install_plan("cuda").fingerprint() == plan.fingerprint()


def test_install_button_refuses_without_online_access(installed_extension, offline):
    with pytest.raises(RuntimeError, match="Allow Online Access"):
        bpy.ops.img3d.install_dependencies(packages="six==1.16.0")


def test_headless_install_refuses_offline_naming_online_mode_and_contacts_nothing(
    installed_extension, offline, nothing_contacted, monkeypatch, capsys
):
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "--python", "vendor_install.py", "--"])
    assert vendor_install.main() == 1
    err = capsys.readouterr().err
    assert "online access is off" in err and "--online-mode" in err
    assert nothing_contacted == []


@pytest.mark.slow
def test_install_button_installs_a_package_that_activate_makes_importable(
    installed_extension, online_access, clean_vendor_folder
):
    assert bpy.ops.img3d.install_dependencies(packages="six==1.16.0") == {"FINISHED"}
    status = bpy.context.window_manager.img3d_tasks.install
    assert not status.running and status.last_error == "" and status.progress == 1.0
    assert any(line.startswith("Successfully installed six-1.16.0") for line in status.log_lines())
    assert (clean_vendor_folder / "six.py").is_file()
    assert (clean_vendor_folder / vendor.STAMP_NAME).is_file()
    assert not (clean_vendor_folder / "numpy").exists()  # six needs no numpy: the pin adds none
    assert vendor.activate(clean_vendor_folder)
    import six

    assert Path(six.__file__).parent == clean_vendor_folder.resolve()
    assert six.__version__ == "1.16.0"
    # Second press: the stamp matches, pip is not run again.
    assert bpy.ops.img3d.install_dependencies(packages="six==1.16.0") == {"FINISHED"}
    assert status.log_lines()[-1] == vendor.UP_TO_DATE_LINE


@pytest.mark.slow
def test_offline_wheelhouse_install_then_check_then_uninstall_leaves_nothing(
    installed_extension, offline, wheelhouse, tmp_path, monkeypatch, capsys
):
    """The whole plan from a wheelhouse, Blender offline, no PyPI probe; then the check."""

    def no_probe(*_args, **_kwargs):
        raise AssertionError("a wheelhouse install must not probe any index")

    monkeypatch.setattr(vendor, "check_network", no_probe)
    monkeypatch.setattr(vendor.urllib.request, "urlopen", no_probe)
    root = tmp_path / "Img3D"
    common = ["--build", "cpu", "--wheelhouse", str(wheelhouse), "--vendor-root", str(root)]
    monkeypatch.setattr(
        sys, "argv", ["blender", "-b", "--python", "vendor_install.py", "--", *common]
    )
    assert vendor_install.main() == 0
    out = capsys.readouterr().out
    folder = root / vendor.vendor_key()
    assert f"from the wheelhouse {wheelhouse.resolve()}" in out and str(folder) in out
    assert "CPU OK: " in out and f"torch {requirements.TORCH_VERSION}" in out
    assert (folder / "torch").is_dir() and (folder / "diffusers").is_dir()
    assert not (folder / "numpy").exists() and not (folder / "scipy").exists()
    # The child-process check, on its own, sees the same thing.
    result = vendor.check_install(folder, "cpu")
    assert result.ok and result.summary.startswith("CPU OK: ")
    # Uninstall: the folder and its sys.path entry are gone.
    vendor.activate(folder)
    monkeypatch.setattr(
        sys,
        "argv",
        ["blender", "-b", "--python", "vendor_install.py", "--", *common, "--uninstall"],
    )
    assert vendor_install.main() == 0
    assert not folder.exists() and list(root.iterdir()) == []
    assert not any(entry.startswith(str(folder)) for entry in sys.path)


def test_blender_mode_dry_run_prints_the_plan_after_the_double_dash(
    installed_extension, monkeypatch, capsys
):
    """``blender -b --python vendor_install.py -- --cuda --dry-run`` as Blender runs it."""
    monkeypatch.setattr(
        sys, "argv", ["blender", "-b", "--python", "vendor_install.py", "--", "--cuda", "--dry-run"]
    )
    assert vendor_install.running_in_blender()
    assert vendor_install.main() == 0
    out = capsys.readouterr().out
    assert "PyTorch build: CUDA" in out and f"numpy=={numpy.__version__}" in out
    assert "--target" in out and "torch==2.13.0" in out and "--index-url" in out


def test_blender_mode_stops_with_the_install_error(
    installed_extension, online_access, monkeypatch, capsys
):
    def no_room(plan, **_kwargs):
        vendor.check_disk_space(plan.vendor_dir, 10**18)

    monkeypatch.setattr(vendor_install.vendor, "preflight", no_room)
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "--python", "vendor_install.py", "--"])
    assert vendor_install.main() == 1
    assert "Not enough disk space" in capsys.readouterr().err
