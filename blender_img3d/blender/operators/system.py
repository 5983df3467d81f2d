"""System check: what the add-on can find on this machine, shown in the preferences and panel."""

from __future__ import annotations

import bpy

from ...core.system import sysinfo

# Results of the last check, drawn by the panel and the preferences. Transient on purpose.
LAST_CHECK: list[sysinfo.CheckEntry] = []


def run_system_check() -> list[sysinfo.CheckEntry]:
    """Every check for this Blender: versions, packages (vendor folder included), torch
    build and GPUs, the preferences' models in the cache, disk space, online access."""
    from ..prefs import get_preferences
    from .dependencies import activate_vendor, vendor_folder

    prefs = get_preferences()
    activate_vendor()
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


class IMG3D_OT_system_check(bpy.types.Operator):
    """Check Python packages, the torch build, GPUs, models and disk space for generating meshes"""

    bl_idname = "img3d.system_check"
    bl_label = "Run System Check"
    bl_options = {"REGISTER"}

    def execute(self, context):
        LAST_CHECK[:] = run_system_check()
        problems = [entry for entry in LAST_CHECK if not entry.ok]
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
