"""The "Img3D" sidebar tab: inputs, Generate/Cancel, progress, last result, system check."""

from __future__ import annotations

import bpy

from .. import __version__
from ..core.deps import missing_modules
from ..operators.system import LAST_CHECK


class IMG3D_PT_main(bpy.types.Panel):
    bl_idname = "IMG3D_PT_main"
    bl_label = "Image to 3D"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Img3D"

    def draw_header(self, context):
        self.layout.label(text=f"v{__version__}")

    def draw(self, context):
        layout = self.layout
        props = context.scene.img3d
        layout.row().prop(props, "mode", expand=True)
        if props.mode == "IMAGE":
            layout.row().prop(props, "image_source", expand=True)
            if props.image_source == "FILE":
                layout.prop(props, "image_path", text="")
            else:
                layout.template_ID(props, "image", open="image.open")
        else:
            layout.prop(props, "prompt", text="")
        missing = missing_modules()
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = False
        row.operator("img3d.system_check", text="Generate", icon="MESH_MONKEY")
        if missing:
            layout.label(text="Missing: " + ", ".join(missing), icon="ERROR")
        else:
            layout.label(text="The engine is not available in this version yet", icon="INFO")


class IMG3D_PT_system(bpy.types.Panel):
    bl_idname = "IMG3D_PT_system"
    bl_label = "System"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Img3D"
    bl_parent_id = "IMG3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.operator("img3d.system_check", icon="CHECKMARK")
        col = layout.column(align=True)
        for entry in LAST_CHECK:
            icon = "CHECKMARK" if entry.ok else "ERROR"
            col.label(text=f"{entry.name}: {entry.detail}", icon=icon)
            if entry.advice:
                col.label(text=f"    {entry.advice}")


CLASSES = (IMG3D_PT_main, IMG3D_PT_system)
