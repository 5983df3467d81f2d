"""Generate: the panel's button (modal, worker thread) and scripts' call (synchronous).

``invoke()`` with a window starts a :class:`GenerateSession` and the shared
modal timer (``tasks.ModalTask``); ``execute()`` — background mode,
``bpy.ops.img3d.generate(...)`` from scripts — runs the same session to its end.
Every setting can be overridden by an operator property named like the CLI
flag (``requests.OVERRIDABLE``); unset properties come from the scene's Img3D
settings and the add-on preferences.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from ...core import choices
from ...core import settings as defaults
from ...core.errors import Img3DError
from .. import session as sessions
from .. import tasks
from ..props import enum_items
from ..requests import OVERRIDABLE, import_options, request_from_scene


class IMG3D_OT_generate(tasks.ModalTask, bpy.types.Operator):
    """Generate a coloured mesh from the image or prompt with Shap-E, here or on the GPU server"""

    bl_idname = "img3d.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    image_path: StringProperty(name="Image", subtype="FILE_PATH", options={"SKIP_SAVE"})
    prompt: StringProperty(name="Prompt", options={"SKIP_SAVE"})
    model: StringProperty(name="Model", options={"SKIP_SAVE"})
    steps: IntProperty(name="Steps", min=1, max=1000, default=defaults.DEFAULT_STEPS)
    guidance: FloatProperty(name="Guidance", min=0.0, max=100.0, options={"SKIP_SAVE"})
    seed: IntProperty(name="Seed", min=0, options={"SKIP_SAVE"})
    batch: IntProperty(name="Variants", min=1, max=defaults.MAX_BATCH, default=1)
    grid_size: IntProperty(
        name="Grid Size",
        min=defaults.MIN_GRID_SIZE,
        max=defaults.MAX_GRID_SIZE,
        default=defaults.DEFAULT_GRID_SIZE,
    )
    device: EnumProperty(
        name="Device", items=enum_items(choices.DEVICES), default=choices.DEVICES[0].name
    )
    target_faces: IntProperty(name="Target Faces", min=0, default=defaults.DEFAULT_TARGET_FACES)
    schedule: EnumProperty(
        name="Schedule", items=enum_items(choices.SCHEDULES), default=defaults.DEFAULT_SCHEDULE
    )

    @classmethod
    def poll(cls, context):
        from ...core.system.deps import missing_modules

        if sessions.active_session() is not None:
            cls.poll_message_set("A generation is already running")
            return False
        from ..prefs import get_preferences

        missing = [] if get_preferences().remote else missing_modules()
        if missing:
            cls.poll_message_set(
                "Missing packages: " + ", ".join(missing) + " (Preferences > Install dependencies)"
            )
            return False
        return True

    def _overrides(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in OVERRIDABLE
            if self.properties.is_property_set(name)
        }

    def _session(self, context) -> sessions.GenerateSession:
        request = request_from_scene(context, self._overrides())
        return sessions.GenerateSession(request, import_options(context))

    def execute(self, context):
        """Synchronous path: background mode and scripts (the same code as ``api.generate``)."""
        try:
            session = self._session(context)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return tasks.run_to_end(self, context, session)

    def invoke(self, context, event):
        if context.window is None or bpy.app.background:
            return self.execute(context)
        try:
            session = self._session(context)
        except Img3DError as exc:
            tasks.state_of("generate", context.window_manager).last_error = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return self.start_modal(context, session)


def _missing_for_preview() -> list[str]:
    from ...core.system.deps import missing_modules
    from ...core.system.requirements import PREVIEW_MODULES

    return missing_modules(PREVIEW_MODULES)


def _needs_install_text(missing: list[str]) -> str:
    return (
        f"Preview Input needs {', '.join(missing)}, which this Blender doesn't have: "
        "Preferences > Add-ons > Img3D > Install Dependencies"
    )


class IMG3D_OT_preview_input(bpy.types.Operator):
    """Prepare the picture exactly as Generate will (cut-out, framing) and show it, in a second"""

    bl_idname = "img3d.preview_input"
    bl_label = "Preview Input"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        missing = _missing_for_preview()
        if missing:
            cls.poll_message_set(_needs_install_text(missing))
            return False
        return True

    def execute(self, context):
        from ..requests import describe_preparation, prepare_input
        from ..scene import store_preview_image

        try:
            prepared = prepare_input(context)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        state = context.window_manager.img3d_tasks
        state.preview_image = store_preview_image(prepared.image)
        lines = describe_preparation(prepared.report)
        state.preview_report = "\n".join(lines)
        state.preview_warning = prepared.report.get("warning") or ""
        if state.preview_warning:
            self.report({"WARNING"}, state.preview_warning)
        else:
            self.report({"INFO"}, "; ".join(lines[:2]))
        return {"FINISHED"}


class IMG3D_OT_cancel(bpy.types.Operator):
    """Stop the running generation after the current sampling step"""

    bl_idname = "img3d.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if sessions.active_session() is None:
            cls.poll_message_set("No generation is running")
            return False
        return True

    def execute(self, context):
        sessions.cancel_active()
        return {"FINISHED"}


CLASSES = (IMG3D_OT_generate, IMG3D_OT_preview_input, IMG3D_OT_cancel)
