"""Generate: the panel's button (modal, worker thread) and scripts' call (synchronous).

``invoke()`` with a window starts a :class:`GenerateSession` and a modal timer;
``execute()`` — background mode, ``bpy.ops.img3d.generate(...)`` from scripts —
runs the same pipeline synchronously. Every setting can be overridden by an
operator property named like the CLI flag; unset properties come from the
scene's Img3D settings and the add-on preferences.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from ...core import settings as defaults
from ...core.errors import CancelledError, ConfigError, Img3DError
from .. import session as sessions
from ..props import DEVICE_ITEMS, SCHEDULE_ITEMS, enum_to_core

TIMER_INTERVAL_SECONDS = 0.1

# Operator property → how to read the scene's value when the property isn't set.
OVERRIDABLE = (
    "image_path",
    "prompt",
    "model",
    "steps",
    "guidance",
    "seed",
    "batch",
    "grid_size",
    "device",
    "target_faces",
    "schedule",
)


def blender_image_to_pil(image: bpy.types.Image, max_pixels: int):
    """A Blender image's current pixels as a PIL image (linear float buffers → sRGB)."""
    import numpy as np

    from ...core.images.blender_pixels import image_from_pixels

    width, height = image.size
    if width == 0 or height == 0:
        raise Img3DError(
            f"The Blender image '{image.name}' has no pixels: open or render it first."
        )
    channels = image.channels
    pixels = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    linear = bool(image.is_float) and image.colorspace_settings.name != "sRGB"
    return image_from_pixels(
        pixels.reshape(height, width, channels), linear=linear, max_pixels=max_pixels
    )


def request_from_scene(context: bpy.types.Context, overrides: dict[str, Any]) -> defaults.Request:
    """Build the core Request from scene settings, preferences and operator overrides.

    An ``image_path`` or ``prompt`` override also picks the mode; otherwise the
    scene's mode and image source decide where the input comes from.
    """
    from ..prefs import get_preferences

    props = context.scene.img3d
    prefs = get_preferences()

    def value(name: str, scene_value: Any) -> Any:
        return overrides[name] if name in overrides else scene_value

    if "prompt" in overrides and "image_path" in overrides:
        raise ConfigError("Give either image_path or prompt, not both.")
    text_mode = "prompt" in overrides or ("image_path" not in overrides and props.mode == "TEXT")
    prompt: Any = None
    image: Any = None
    name = None
    if text_mode:
        prompt = value("prompt", props.prompt)
        if not prompt.strip():
            raise ConfigError("Type a prompt first, e.g. 'a red chair'.")
    elif "image_path" in overrides or props.image_source == "FILE":
        image_path = value("image_path", props.image_path)
        if not image_path:
            raise ConfigError("Pick an image file first (or switch to a Blender image or Text).")
        image = Path(bpy.path.abspath(image_path))
    elif props.image is not None:
        image = blender_image_to_pil(props.image, defaults.MAX_PIXELS)
        name = Path(props.image.name).stem
    else:
        raise ConfigError("Pick a Blender image first (or switch to a file or Text).")

    mode = "text" if prompt is not None else "image"
    model = value("model", props.model) or (
        prefs.text_model if mode == "text" else prefs.image_model
    )
    seed = value("seed", props.seed)
    if props.random_seed and "seed" not in overrides:
        seed = random.randrange(0, 2**31 - 1)
        props.seed = seed
    guidance = overrides.get("guidance")
    if guidance is None and not props.use_default_guidance:
        guidance = props.guidance
    device = value("device", props.device)
    if device == "AUTO" and "device" not in overrides:
        device = prefs.device
    revision = (
        prefs.revision if model in (defaults.IMAGE_MODEL_ID, defaults.TEXT_MODEL_ID) else None
    )
    request = defaults.Request(
        image=image,
        prompt=prompt,
        name=name,
        image_settings=defaults.ImageSettings(
            remove_background=props.remove_background, border=props.border
        ),
        generation=defaults.GenerationSettings(
            model=model,
            revision=revision,
            cache_dir=str(prefs.resolved_cache_dir()),
            allow_download=prefs.downloads_allowed(),
            steps=value("steps", props.steps),
            guidance=guidance,
            seed=seed,
            batch=value("batch", props.batch),
            schedule=enum_to_core(value("schedule", props.schedule)),
            device=enum_to_core(device),
            grid_size=value("grid_size", props.grid_size),
        ),
        mesh=defaults.MeshSettings(
            enabled=props.process_mesh,
            repair=props.repair,
            target_faces=value("target_faces", props.target_faces),
            smooth_iterations=props.smooth_iterations,
            size=props.size or None,
        ),
    )
    request.validate()
    return request


def keep_model_loaded() -> bool:
    from ..prefs import get_preferences

    return bool(get_preferences().keep_model_loaded)


def import_options(context: bpy.types.Context) -> sessions.ImportOptions:
    props = context.scene.img3d
    return sessions.ImportOptions(
        at_cursor=props.placement == "CURSOR", smooth=props.shading == "SMOOTH"
    )


class IMG3D_OT_generate(bpy.types.Operator):
    """Generate a coloured mesh from the image or prompt with Shap-E, on this computer"""

    bl_idname = "img3d.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}

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
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO")
    target_faces: IntProperty(name="Target Faces", min=0, default=defaults.DEFAULT_TARGET_FACES)
    schedule: EnumProperty(name="Schedule", items=SCHEDULE_ITEMS, default="SHAP_E")

    @classmethod
    def poll(cls, context):
        from ...core.system.deps import missing_modules
        from .dependencies import activate_vendor

        if sessions.active_session() is not None:
            cls.poll_message_set("A generation is already running")
            return False
        activate_vendor()  # idempotent: packages installed in an earlier session count
        missing = missing_modules()
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

    def execute(self, context):
        """Synchronous path: background mode and scripts (the same code as ``api.generate``)."""
        from ..api import generate

        try:
            objects = generate(context, **self._overrides())
        except CancelledError:
            self.report({"WARNING"}, "Generation cancelled")
            return {"CANCELLED"}
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, "Generated " + ", ".join(obj.name for obj in objects))
        return {"FINISHED"}

    def invoke(self, context, event):
        if context.window is None or bpy.app.background:
            return self.execute(context)
        from .dependencies import activate_vendor

        activate_vendor()
        try:
            request = request_from_scene(context, self._overrides())
            self._session = sessions.GenerateSession(
                request, import_options(context), release_model=not keep_model_loaded()
            )
            self._session.start(context.window_manager)
        except Img3DError as exc:
            context.window_manager.img3d_job.last_error = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(
            TIMER_INTERVAL_SECONDS, window=context.window
        )
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._session.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = self._session.tick(context)
        _redraw_panels(context)
        if state == sessions.RUNNING:
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        return self._report_end(self._session, state)

    def _report_end(self, session: sessions.GenerateSession, state: str):
        if state == sessions.FINISHED:
            names = ", ".join(obj.name for obj in session.objects)
            self.report({"INFO"}, f"Generated {names}")
            return {"FINISHED"}
        if state == sessions.FAILED:
            self.report({"ERROR"}, session.error or "Generation failed")
        else:
            self.report({"WARNING"}, "Generation cancelled")
        return {"CANCELLED"}


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
        session = sessions.active_session()
        if session is not None:
            session.cancel()
            context.window_manager.img3d_job.message = "Cancelling..."
        return {"FINISHED"}


def _redraw_panels(context) -> None:
    screen = context.screen
    if screen is None:
        return
    for area in screen.areas:
        if area.type == "VIEW_3D":
            area.tag_redraw()


CLASSES = (IMG3D_OT_generate, IMG3D_OT_cancel)
