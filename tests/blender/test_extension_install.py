"""The extension installs with Blender's own installer and registers/unregisters cleanly."""

from __future__ import annotations

import sys

import addon_utils
import bpy

from blender_img3d import __version__

OPERATORS = ("system_check",)
PANELS = ("IMG3D_PT_main", "IMG3D_PT_system")


def registered_names() -> dict[str, bool]:
    names = {f"op:{op}": hasattr(bpy.ops.img3d, op) and _op_exists(op) for op in OPERATORS}
    names.update({f"panel:{panel}": hasattr(bpy.types, panel) for panel in PANELS})
    names["scene.img3d"] = hasattr(bpy.types.Scene, "img3d")
    names["wm.img3d_tasks"] = hasattr(bpy.types.WindowManager, "img3d_tasks")
    return names


def _op_exists(op: str) -> bool:
    try:
        getattr(bpy.ops.img3d, op).get_rna_type()
    except KeyError:
        return False
    return True


def test_installed_from_zip_into_the_user_repository(installed_extension, blender_user_home):
    module = sys.modules[installed_extension]
    installed_at = blender_user_home / "extensions" / "user_default" / "blender_img3d"
    assert module.__file__.startswith(str(installed_at))
    assert module.__version__ == __version__
    assert installed_extension in bpy.context.preferences.addons


def test_operators_panels_and_properties_are_registered(installed_extension):
    assert all(registered_names().values()), registered_names()
    panel = bpy.types.IMG3D_PT_main
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == (
        "VIEW_3D",
        "UI",
        "Img3D",
    )
    # Operators and panel come from the installed package, not the source tree.
    assert bpy.types.IMG3D_PT_main.__module__.startswith(installed_extension)
    assert bpy.context.scene.img3d.steps == 64


def test_preferences_are_keyed_by_the_extension_package(installed_extension):
    prefs = bpy.context.preferences.addons[installed_extension].preferences
    assert type(prefs).bl_idname == installed_extension
    assert prefs.image_model == "openai/shap-e-img2img"


def test_disable_and_enable_twice_leaves_nothing_behind(installed_extension):
    for _ in range(2):
        addon_utils.disable(installed_extension, default_set=True)
        leftovers = {name for name, present in registered_names().items() if present}
        assert leftovers == set()
        assert installed_extension not in bpy.context.preferences.addons
        addon_utils.enable(installed_extension, default_set=True)
        assert all(registered_names().values()), registered_names()


def test_system_check_runs_without_a_gpu(installed_extension):
    assert bpy.ops.img3d.system_check() == {"FINISHED"}
    checks = bpy.context.window_manager.img3d_tasks.system_check
    names = {entry.name for entry in checks}
    assert {"Blender", "torch", "online access"} <= names
