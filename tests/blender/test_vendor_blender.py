"""Blender mode of the dependency install: the plan for this Blender, and one real install.

The real install goes through the preferences' operator, which runs
``python -m blender_img3d.core.system.vendor`` from the *installed* extension in a
child process: the code path of the Install Dependencies button.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import bpy
import numpy
import pytest

from blender_img3d.core.system import vendor
from blender_img3d.core.system.requirements import RUNTIME_REQUIREMENTS

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
import vendor_install  # noqa: E402


@pytest.fixture
def online_access():
    system = bpy.context.preferences.system
    before = system.use_online_access
    system.use_online_access = True
    yield
    system.use_online_access = before


@pytest.fixture
def clean_vendor_folder(installed_extension):
    """The extension's vendor folder, emptied and taken off sys.path after the test."""
    folder = Path(bpy.utils.extension_path_user(installed_extension, path="vendor", create=True))
    yield folder
    for name in [name for name in sys.modules if name == "six" or name.startswith("six.")]:
        del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if not entry.startswith(str(folder))]
    shutil.rmtree(folder, ignore_errors=True)


def test_blender_plan_targets_the_extension_vendor_folder_with_blenders_numpy(
    installed_extension, blender_user_home
):
    assert vendor_install.installed_extension_package() == installed_extension
    plan = vendor_install.blender_plan(variant="cuda")
    expected = blender_user_home / "extensions" / ".user" / "user_default" / "blender_img3d"
    assert plan.vendor_dir == (expected / "vendor").resolve()
    assert plan.constraints == (f"numpy=={numpy.__version__}",)  # the numpy bpy imports
    assert plan.requirements == RUNTIME_REQUIREMENTS
    assert plan.variant == "cuda" and plan.required_free_bytes >= 6 * 1024**3
    # The preferences button computes the same plan inside the installed extension.
    operators = sys.modules[f"{installed_extension}.blender.operators.dependencies"]
    assert operators.install_plan("CUDA").fingerprint() == plan.fingerprint()


def test_install_button_refuses_without_online_access(installed_extension):
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="Allow Online Access"):
        bpy.ops.img3d.install_dependencies(packages="six==1.16.0")


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
    # The operator activated the folder; activate() again is a no-op that says so.
    assert vendor.activate(clean_vendor_folder)
    import six

    assert Path(six.__file__).parent == clean_vendor_folder.resolve()
    assert six.__version__ == "1.16.0"
    # Second press: the stamp matches, pip is not run again.
    assert bpy.ops.img3d.install_dependencies(packages="six==1.16.0") == {"FINISHED"}
    assert status.log_lines()[-1] == vendor.UP_TO_DATE_LINE


def test_blender_mode_reads_its_options_after_the_double_dash(
    installed_extension, monkeypatch, capsys
):
    """``blender -b --python vendor_install.py -- --cuda --dry-run`` as Blender runs it."""
    monkeypatch.setattr(
        sys, "argv", ["blender", "-b", "--python", "vendor_install.py", "--", "--cuda", "--dry-run"]
    )
    assert vendor_install.running_in_blender()
    assert vendor_install.main() == 0
    out = capsys.readouterr().out
    assert "CUDA build of torch" in out and f"numpy=={numpy.__version__}" in out
    assert "--target" in out and "torch==2.13.0" in out


def test_blender_mode_stops_with_the_install_error(installed_extension, monkeypatch, capsys):
    def no_room(plan, **_kwargs):
        vendor.check_disk_space(plan.vendor_dir, 10**18)

    monkeypatch.setattr(vendor_install.vendor, "install", no_room)
    monkeypatch.setattr(sys, "argv", ["blender", "-b", "--python", "vendor_install.py", "--"])
    assert vendor_install.main() == 1
    assert "Not enough disk space" in capsys.readouterr().err
