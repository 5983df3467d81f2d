"""Sidebar sub-panels for working on an existing mesh: mesh tools and its quality report."""

from __future__ import annotations

import bpy

from ..operators.mesh_tools import REPORT_KEYS, stored_report
from .sidebar import SidebarSubPanel


class IMG3D_PT_mesh_tools(SidebarSubPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_mesh_tools"
    bl_label = "Mesh Tools"

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            layout.label(text="Select a mesh object", icon="INFO")
        col = layout.column(align=True)
        col.operator("img3d.mesh_clean", icon="BRUSH_DATA")
        col.operator("img3d.mesh_decimate", icon="MOD_DECIM")
        col.operator("img3d.mesh_smooth", icon="MOD_SMOOTH")
        layout.operator("img3d.export", text="Export Selected...", icon="EXPORT")


class IMG3D_PT_quality(SidebarSubPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_quality"
    bl_label = "Quality Report"

    def draw(self, context):
        layout = self.layout
        layout.operator("img3d.quality_report", icon="VIEWZOOM")
        report = stored_report(context.active_object)
        if report is None:
            layout.label(text="No report for the active object yet")
            return
        col = layout.column(align=True)
        for key, label in REPORT_KEYS:
            value = report.get(key)
            if value is None:
                continue
            row = col.row()
            problem = (key == "watertight" and not value) or (
                key in {"boundary_edges", "non_manifold_edges", "degenerate_faces"} and value > 0
            )
            row.alert = bool(problem)
            row.label(text=label)
            row.label(text=_format(value))
        size = report.get("size")
        if size:
            col.label(text="Size: " + " × ".join(f"{v:.3g}" for v in size))


def _format(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}"


CLASSES = (IMG3D_PT_mesh_tools, IMG3D_PT_quality)
