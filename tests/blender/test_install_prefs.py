"""The install part of the preferences: plan, check, Repair, Uninstall, Copy Log, offline rules."""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import pytest

from blender_img3d.core.system import vendor


@pytest.fixture
def prefs(installed_extension):
    preferences = bpy.context.preferences.addons[installed_extension].preferences
    saved = {
        name: getattr(preferences, name)
        for name in ("torch_build", "wheelhouse", "install_folder", "cache_dir")
    }
    online = bpy.context.preferences.system.use_online_access
    yield preferences
    for name, value in saved.items():
        setattr(preferences, name, value)
    bpy.context.preferences.system.use_online_access = online


@pytest.fixture
def operators(installed_extension):
    return sys.modules[f"{installed_extension}.blender.operators.dependencies"]


def draw(prefs):
    from tests.blender.ui_layout import PreferencesView, RecordingLayout

    layout = RecordingLayout()
    type(prefs).draw(PreferencesView(prefs, layout), bpy.context)
    return layout


def test_the_page_shows_the_plan_and_every_install_button(prefs, operators):
    prefs.torch_build = "cpu"
    layout = draw(prefs)
    labels = layout.texts("label")
    assert any(text.startswith("PyTorch build: CPU") for text in labels)
    assert any("download.pytorch.org/whl/cpu" in text for text in labels)
    assert any(text.startswith("Into ") and vendor.vendor_key() in text for text in labels)
    assert {
        "img3d.install_dependencies",
        "img3d.check_dependencies",
        "img3d.uninstall_dependencies",
        "img3d.copy_install_log",
    } <= set(layout.texts("operator"))
    assert {"torch_build", "torch_index_url", "wheelhouse", "install_folder"} <= set(
        layout.texts("prop")
    )
    assert any(text.startswith("In ") for text in labels)  # the model cache listing


def test_an_impossible_build_is_shown_in_the_plan_not_raised(prefs):
    prefs.torch_build = "mps"  # Linux/Windows: no Apple GPU build
    labels = draw(prefs).texts("label")
    assert any(text.startswith("Can't install here:") and "macOS" in text for text in labels)


def test_the_model_manager_lists_the_cache_with_sizes(prefs, tmp_path):
    model = tmp_path / "models--org--tiny" / "blobs"
    model.mkdir(parents=True)
    (model / "abc").write_bytes(b"x" * 2048)
    prefs.cache_dir = str(tmp_path)
    labels = draw(prefs).texts("label")
    assert "org/tiny: 2.0 KB" in labels


def test_check_button_shows_the_result_and_keeps_it(prefs, operators, tmp_path):
    prefs.install_folder = str(tmp_path)
    prefs.torch_build = "cpu"
    # The bpy test session has torch on its path, so the child check passes on the CPU.
    assert bpy.ops.img3d.check_dependencies() == {"FINISHED"}
    check = operators.last_check()
    assert check is None or check.ok  # no install folder yet: nothing to keep it in
    folder = operators.vendor_folder()
    folder.mkdir(parents=True)
    assert bpy.ops.img3d.check_dependencies() == {"FINISHED"}
    assert operators.last_check().summary.startswith("CPU OK: ")
    assert any(text.startswith("CPU OK: ") for text in draw(prefs).texts("label"))


def test_uninstall_removes_this_blenders_folder_only(prefs, operators, tmp_path):
    prefs.install_folder = str(tmp_path)
    folder = operators.vendor_folder()
    (folder / "torch").mkdir(parents=True)
    other = tmp_path / "cp313-other_platform"
    other.mkdir()
    vendor.activate(folder)
    assert bpy.ops.img3d.uninstall_dependencies() == {"FINISHED"}
    assert not folder.exists() and other.is_dir()
    assert not any(entry.startswith(str(folder)) for entry in sys.path)
    assert bpy.context.window_manager.img3d_tasks.install.message == f"Removed {folder}"


def test_copy_log_puts_the_plan_and_the_check_on_the_clipboard(prefs, operators):
    prefs.torch_build = "cpu"
    assert bpy.ops.img3d.copy_install_log() == {"FINISHED"}
    # Background Blender has no clipboard; the text the operator copies:
    text = operators.install_log_text(bpy.context)
    assert text.startswith("Blender ") and "PyTorch build: CPU" in text
    assert "Last check:" in text and "Log:" in text


def test_offline_every_network_button_refuses_naming_the_setting(prefs):
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="online access is off.*--online-mode"):
        bpy.ops.img3d.install_dependencies()
    with pytest.raises(RuntimeError, match="online access is off.*--online-mode"):
        bpy.ops.img3d.install_dependencies(repair=True)
    with pytest.raises(RuntimeError, match="online access is off.*--online-mode"):
        bpy.ops.img3d.download_models()
    labels = draw(prefs).texts("label")
    assert any("Allow Online Access" in text for text in labels)


def test_a_wheelhouse_needs_no_online_access_and_its_absence_is_reported(prefs, tmp_path):
    bpy.context.preferences.system.use_online_access = False
    prefs.install_folder = str(tmp_path / "short")
    prefs.wheelhouse = str(tmp_path / "missing-wheels")
    with pytest.raises(RuntimeError, match="wheelhouse folder .* doesn't exist"):
        bpy.ops.img3d.install_dependencies()
    assert not Path(tmp_path / "short").exists()
