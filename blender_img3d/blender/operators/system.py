"""System check: what the add-on can find on this machine, shown in the preferences and panel."""

from __future__ import annotations

import bpy

from ...core.system import sysinfo


def run_system_check() -> list[sysinfo.CheckEntry]:
    """Every check for this Blender: versions, packages (vendor folder included), torch
    build and GPUs, the preferences' models in the cache, disk space, online access."""
    from ..prefs import get_preferences
    from .dependencies import vendor_folder

    prefs = get_preferences()
    entries = sysinfo.collect(
        include_devices=True,
        cache_dir=prefs.resolved_cache_dir(),
        models=(("image", prefs.image_model), ("text", prefs.text_model)),
        revision=prefs.revision,
    )
    entries.insert(0, sysinfo.CheckEntry("Blender", True, bpy.app.version_string))
    entries.append(sysinfo.vendor_entry(vendor_folder()))
    entries.append(sysinfo.online_entry(bool(bpy.app.online_access)))
    return entries


def store_check(window_manager, entries: list[sysinfo.CheckEntry]) -> None:
    """Keep the results on the WindowManager (transient), where the panels draw them."""
    stored = window_manager.img3d_tasks.system_check
    stored.clear()
    for entry in entries:
        item = stored.add()
        item.name, item.ok = entry.name, entry.ok
        item.detail, item.advice = entry.detail, entry.advice or ""


class IMG3D_OT_system_check(bpy.types.Operator):
    """Check Python packages, the torch build, GPUs, models and disk space for generating meshes"""

    bl_idname = "img3d.system_check"
    bl_label = "Run System Check"
    bl_options = {"REGISTER"}

    def execute(self, context):
        entries = run_system_check()
        store_check(context.window_manager, entries)
        problems = [entry for entry in entries if not entry.ok]
        if problems:
            first = problems[0]
            self.report(
                {"WARNING"},
                f"{len(problems)} problem(s); first: {first.name}: {first.advice or first.detail}",
            )
        else:
            self.report({"INFO"}, "System check passed")
        return {"FINISHED"}


CLASSES = (IMG3D_OT_system_check,)
