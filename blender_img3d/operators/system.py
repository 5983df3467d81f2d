"""System check: what the add-on can find on this machine, shown in the panel."""

from __future__ import annotations

import bpy

from ..core import sysinfo

# Results of the last check, drawn by the panel. Transient on purpose.
LAST_CHECK: list[sysinfo.CheckEntry] = []


class IMG3D_OT_system_check(bpy.types.Operator):
    """Check Python packages, the torch build, GPUs and disk space for generating meshes"""

    bl_idname = "img3d.system_check"
    bl_label = "Run System Check"
    bl_options = {"REGISTER"}

    def execute(self, context):
        from ..prefs import get_preferences

        entries = sysinfo.collect(
            include_devices=True, cache_dir=get_preferences().resolved_cache_dir()
        )
        entries.insert(0, sysinfo.CheckEntry("Blender", True, bpy.app.version_string))
        online = bool(bpy.app.online_access)
        advice = "" if online else "Enable Preferences > System > Allow Online Access to download"
        entries.append(sysinfo.CheckEntry("online access", online, str(online), advice))
        LAST_CHECK[:] = entries
        problems = [entry for entry in entries if not entry.ok]
        if problems:
            self.report({"WARNING"}, f"{len(problems)} problem(s): " + problems[0].advice)
        else:
            self.report({"INFO"}, "System check passed")
        return {"FINISHED"}


CLASSES = (IMG3D_OT_system_check,)
