"""Draft, Standard and Final: Blender presets of the generation settings.

The three bundled presets are data (:data:`PRESETS`, Standard being the core's
reference defaults); ``register()`` writes them as ordinary Blender preset
files, once, into the user's preset folders, so they sit beside the ones a
studio adds:

- ``presets/img3d/generate/`` for the panel's preset menu (``IMG3D_MT_presets``;
  its + button saves the current settings as a new preset, - removes one);
- ``presets/operator/img3d.generate/`` for the Generate operator's own preset
  menu in the Adjust Last Operation panel (``bl_options`` has ``PRESET``).

A bundled file the user has edited is never replaced.
"""

from __future__ import annotations

import logging
from pathlib import Path

import bpy
from bl_operators.presets import AddPresetBase

from ..core import settings as defaults

log = logging.getLogger(__name__)

PRESET_SUBDIR = "img3d/generate"
OPERATOR_PRESET_SUBDIR = "operator/img3d.generate"

PRESET_SETTINGS = defaults.PRESET_SETTINGS  # the core's one list of presets
PRESETS: dict[str, dict[str, int]] = defaults.GENERATION_PRESETS


def preset_text(owner: str, values: dict[str, int]) -> str:
    """A preset file: Blender runs it with ``script.execute_preset``."""
    lines = ["import bpy", owner, ""]
    lines += [f"{owner.split(' = ')[0]}.{name} = {value!r}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


PANEL_OWNER = "props = bpy.context.scene.img3d"
OPERATOR_OWNER = "op = bpy.context.active_operator"


def user_preset_folder(subdir: str) -> Path:
    return Path(bpy.utils.user_resource("SCRIPTS", path=f"presets/{subdir}", create=True))


def install_bundled_presets() -> None:
    """Write the bundled presets into the user's preset folders where they are missing."""
    for subdir, owner in ((PRESET_SUBDIR, PANEL_OWNER), (OPERATOR_PRESET_SUBDIR, OPERATOR_OWNER)):
        try:
            folder = user_preset_folder(subdir)
            for name, values in PRESETS.items():
                path = folder / f"{name}.py"
                if not path.exists():
                    path.write_text(preset_text(owner, values), encoding="utf-8")
        except OSError as error:  # a read-only Blender config: presets are a convenience
            log.warning("Img3D presets not installed in %s: %s", subdir, error)


class IMG3D_MT_presets(bpy.types.Menu):
    """Generation presets: Draft, Standard, Final and any the studio saved."""

    bl_label = "Generation Presets"
    preset_subdir = PRESET_SUBDIR
    preset_operator = "script.execute_preset"
    draw = bpy.types.Menu.draw_preset


class IMG3D_OT_add_preset(AddPresetBase, bpy.types.Operator):
    """Save the current sampling and mesh settings as a preset (or remove the chosen one)"""

    bl_idname = "img3d.add_preset"
    bl_label = "Add Generation Preset"
    preset_menu = "IMG3D_MT_presets"
    preset_defines = [PANEL_OWNER]
    preset_values = [f"props.{name}" for name in PRESET_SETTINGS]
    preset_subdir = PRESET_SUBDIR


CLASSES = (IMG3D_MT_presets, IMG3D_OT_add_preset)
