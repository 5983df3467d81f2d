"""The "Img3D" sidebar tab: inputs, Generate/Cancel, progress, last result, system check."""

from __future__ import annotations

import textwrap

import bpy

from ...core.shap_e.warmup import warm_in_background
from ...core.system.deps import missing_modules
from ...core.version import __version__
from ..prefs import ADDON_PACKAGE, get_preferences
from ..presets import IMG3D_MT_presets
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
            row = inputs.row(align=True)
            row.prop(props, "background", text="")
            row.prop(props, "border", text="Border")
            row = inputs.row(align=True)
            row.operator("img3d.preview_input", icon="IMAGE_DATA")
            warning = context.window_manager.img3d_tasks.preview_warning
            if warning:
                # Beside Preview Input: the background was kept, or the cut is doubtful.
                row.label(text="", icon="ERROR")
                for line in _wrapped(warning):
                    inputs.label(text=line)
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
            prefs = get_preferences()
            missing = [] if prefs.remote else missing_modules()
            if prefs.preload_engine and not prefs.remote and not missing:
                warm_in_background()  # once per session; later redraws return at once
            row = layout.row()
            row.scale_y = 1.4
            if prefs.remote:
                layout.label(text=f"On the server {prefs.server_url}", icon="NETWORK_DRIVE")
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
        export = context.window_manager.img3d_tasks.export
        if export.running:  # File > Export Mesh (Img3D) on the background task
            layout.progress(factor=export.progress, type="BAR", text=export.message)
            row = layout.row()
            row.enabled = not export.cancelling
            row.operator("img3d.cancel_task", icon="CANCEL").task = "EXPORT"
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
        row = layout.row(align=True)
        row.menu("IMG3D_MT_presets", text=IMG3D_MT_presets.bl_label)
        row.operator("img3d.add_preset", text="", icon="ADD")
        row.operator("img3d.add_preset", text="", icon="REMOVE").remove_active = True
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
        col.prop(props, "output_dir")
        col.prop(props, "bake_texture")
        sub = col.column()
        sub.enabled = props.bake_texture
        sub.prop(props, "texture_size")
        col.prop(props, "placement")
        col.prop(props, "shading")


class IMG3D_UL_history(bpy.types.UIList):
    """One row per past generation: name, seed, time and how it ended."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index):
        icon = {"Finished": "CHECKMARK", "Failed": "ERROR"}.get(item.status, "CANCEL")
        row = layout.row(align=True)
        row.label(text=item.name, icon=icon)
        sub = row.row()
        sub.alignment = "RIGHT"
        sub.label(text=f"s{item.seed}  {item.when}")


class IMG3D_PT_result(SidebarSubPanel, bpy.types.Panel):
    """What to do next with the selected result, and the file's last generations."""

    bl_idname = "IMG3D_PT_result"
    bl_label = "Results"
    bl_options = set()

    def draw(self, context):
        layout = self.layout
        props = context.scene.img3d
        obj = context.active_object
        if obj is not None and "img3d_request" in obj:
            box = layout.box()
            box.label(text=f"{obj.name}: seed {obj.get('img3d_seed', 0)}", icon="OBJECT_DATA")
            col = box.column(align=True)
            col.operator("img3d.generate_again", icon="FILE_REFRESH")
            col.operator("img3d.variations", icon="MOD_ARRAY")
            col.operator("img3d.redecode", icon="MESH_GRID")
            col.operator("img3d.copy_settings", icon="COPYDOWN")
        layout.operator("img3d.import_result", icon="IMPORT")
        if len(props.history):
            layout.template_list(
                "IMG3D_UL_history", "", props, "history", props, "history_index", rows=3
            )


class IMG3D_PT_input_preview(SidebarSubPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_input_preview"
    bl_label = "Model Input"
    bl_options = set()

    @classmethod
    def poll(cls, context):
        name = context.window_manager.img3d_tasks.preview_image
        return bool(name) and name in bpy.data.images

    def draw(self, context):
        state = context.window_manager.img3d_tasks
        image = bpy.data.images[state.preview_image]
        image.preview_ensure()
        self.layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)
        col = self.layout.column(align=True)
        for line in state.preview_report.splitlines():
            col.label(text=line)


class IMG3D_PT_system(SidebarSubPanel, bpy.types.Panel):
    bl_idname = "IMG3D_PT_system"
    bl_label = "System"
    bl_order = 10  # after the mesh tools and quality report

    def draw(self, context):
        draw_check(self.layout)


def _wrapped(text: str, width: int = 42) -> list[str]:
    """A long message as label lines (a panel label does not wrap by itself)."""
    return textwrap.wrap(text, width) or [text]


CLASSES = (
    IMG3D_PT_main,
    IMG3D_PT_advanced,
    IMG3D_UL_history,
    IMG3D_PT_result,
    IMG3D_PT_input_preview,
    IMG3D_PT_system,
)
