"""The "Img3D" sidebar tab: inputs, Generate/Cancel, progress, last result, system check."""

from __future__ import annotations

import bpy

from ...core.system.deps import missing_modules
from ...core.version import __version__
from ..prefs import ADDON_PACKAGE
from .sidebar import SidebarPanel, SidebarSubPanel
from .system_report import draw_check


class IMG3D_PT_main(SidebarPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_main"
    bl_label = "Image to 3D"

    def draw_header(self, context):
        self.layout.label(text=f"v{__version__}")

    def draw(self, context):
        layout = self.layout
        props = context.scene.img3d
        job = context.window_manager.img3d_tasks.generate
        inputs = layout.column()
        inputs.enabled = not job.running
        inputs.row().prop(props, "mode", expand=True)
        if props.mode == "image":
            inputs.row().prop(props, "image_source", expand=True)
            if props.image_source == "FILE":
                inputs.prop(props, "image_path", text="")
            else:
                inputs.template_ID(props, "image", open="image.open")
            inputs.prop(props, "remove_background")
        else:
            inputs.prop(props, "prompt", text="")
        row = inputs.row(align=True)
        row.prop(props, "seed")
        row.prop(props, "random_seed", text="", icon="FILE_REFRESH")
        inputs.prop(props, "batch")

        if job.running:
            layout.progress(factor=job.progress, type="BAR", text=job.message or job.phase)
            row = layout.row()
            row.enabled = not job.cancelling
            row.operator("img3d.cancel", icon="CANCEL")
        else:
            missing = missing_modules()
            row = layout.row()
            row.scale_y = 1.4
            # Only Generate needs the runtime install; the button says so (export and the
            # mesh tools run on the wheels bundled with the extension).
            text = "Generate (needs Install Dependencies)" if missing else "Generate"
            row.operator("img3d.generate", text=text, icon="MESH_MONKEY")
            if missing:
                box = layout.box()
                box.label(text="Missing: " + ", ".join(missing), icon="ERROR")
                box.label(text="Export and the mesh tools work without them")
                show = box.operator("preferences.addon_show", text="Install Dependencies…")
                show.module = ADDON_PACKAGE
        if job.last_error and not job.running:
            box = layout.box()
            box.alert = True
            for index, line in enumerate(_wrap(job.last_error, 44)):
                box.label(text=line, icon="ERROR" if index == 0 else "BLANK1")
        elif job.last_summary and not job.running:
            layout.label(text=job.last_summary, icon="CHECKMARK")


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [text]


class IMG3D_PT_advanced(SidebarSubPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_advanced"
    bl_label = "Advanced"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        props = context.scene.img3d
        layout.enabled = not context.window_manager.img3d_tasks.generate.running
        col = layout.column(heading="Sampling")
        col.prop(props, "model", text="Model", placeholder="from preferences")
        col.prop(props, "steps")
        col.prop(props, "use_default_guidance")
        sub = col.column()
        sub.enabled = not props.use_default_guidance
        sub.prop(props, "guidance")
        col.prop(props, "schedule")
        col.prop(props, "device")
        col.prop(props, "grid_size")
        if props.mode == "image":
            col = layout.column(heading="Image")
            col.prop(props, "border")
        col = layout.column(heading="Mesh")
        col.prop(props, "process_mesh")
        sub = col.column()
        sub.enabled = props.process_mesh
        sub.prop(props, "target_faces")
        sub.prop(props, "repair")
        sub.prop(props, "smooth_iterations")
        sub.prop(props, "size")
        col = layout.column(heading="Result")
        col.prop(props, "placement")
        col.prop(props, "shading")


class IMG3D_PT_input_preview(SidebarSubPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_input_preview"
    bl_label = "What the Model Saw"

    @classmethod
    def poll(cls, context):
        name = context.window_manager.img3d_tasks.preview_image
        return bool(name) and name in bpy.data.images

    def draw(self, context):
        image = bpy.data.images[context.window_manager.img3d_tasks.preview_image]
        image.preview_ensure()
        self.layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)


class IMG3D_PT_system(SidebarSubPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_system"
    bl_label = "System"
    bl_order = 10  # after the mesh tools and quality report

    def draw(self, context):
        draw_check(self.layout)


CLASSES = (IMG3D_PT_main, IMG3D_PT_advanced, IMG3D_PT_input_preview, IMG3D_PT_system)
