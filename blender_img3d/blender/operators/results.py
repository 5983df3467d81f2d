"""The loop around a result: generate again, variations, copy settings, re-decode, import.

Each works on a generated object through its custom properties (the recorded
request ``img3d_request``, the files ``img3d_glb`` / ``img3d_latents``), runs as
a :class:`~..session.GenerateSession` like Generate — modal with a window,
ticked to its end without — and puts its result beside the object it came from.
Import brings a Shap-E GLB or latents made elsewhere (the CLI, a farm) into the
same loop.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from ...core import settings as defaults
from ...core.errors import ConfigError, Img3DError
from .. import session as sessions
from .. import tasks
from ..requests import (
    ImportOptions,
    copy_record_to_scene,
    import_options,
    output_folder,
    request_from_record,
)

SEED_LIMIT = 2**31 - 1


def generated_object(context) -> Optional[bpy.types.Object]:
    obj = context.active_object
    return obj if obj is not None and "img3d_request" in obj else None


def record_of(obj: bpy.types.Object) -> dict[str, Any]:
    try:
        record = json.loads(obj["img3d_request"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{obj.name} has no readable Img3D settings to re-run.") from None
    return record


def beside(obj: bpy.types.Object) -> tuple[float, float, float]:
    """Where a re-run's result goes: right of ``obj``, a quarter of its width apart."""
    from ..scene import VARIANT_GAP

    width = float(obj.dimensions.x)
    x, y, z = obj.location
    return (x + width * (1.0 + VARIANT_GAP), y, z)


def new_seed(*avoid: int) -> int:
    while True:
        seed = random.randrange(0, SEED_LIMIT)
        if seed not in avoid:
            return seed


class _ResultOperator(tasks.ModalTask):
    """Shared by the operators that start a session from the active generated object."""

    @classmethod
    def poll(cls, context):
        if sessions.active_session() is not None:
            cls.poll_message_set("A generation is already running")
            return False
        if generated_object(context) is None:
            cls.poll_message_set("Select an object made by Img3D")
            return False
        return True

    def session(self, context, obj) -> sessions.GenerateSession:
        raise NotImplementedError

    def _run(self, context):
        obj = generated_object(context)
        try:
            session = self.session(context, obj)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if context.window is None or bpy.app.background:
            return tasks.run_to_end(self, context, session)
        return self.start_modal(context, session)

    def execute(self, context):
        return self._run(context)

    def rerun(self, context, obj, *, seed: int, batch: int) -> sessions.GenerateSession:
        """The object's recorded generation with ``seed`` and ``batch``, placed beside it."""
        request = request_from_record(record_of(obj), seed=seed, batch=batch)
        return sessions.GenerateSession(request, self.placement(context, obj))

    def placement(self, context, obj) -> ImportOptions:
        options = import_options(context)
        options.location = beside(obj)
        return options


class IMG3D_OT_generate_again(_ResultOperator, bpy.types.Operator):
    """Run the selected result's generation again, with a new seed or the same one"""

    bl_idname = "img3d.generate_again"
    bl_label = "Generate Again"
    bl_options = {"REGISTER", "UNDO"}

    same_seed: BoolProperty(
        name="Same Seed",
        description="Keep the seed (the same result, e.g. after changing the model files)",
        default=False,
    )

    def session(self, context, obj):
        old = int(obj["img3d_seed"])
        return self.rerun(context, obj, seed=old if self.same_seed else new_seed(old), batch=1)


class IMG3D_OT_variations(_ResultOperator, bpy.types.Operator):
    """Generate variants of the selected result with a new seed, laid out beside it"""

    bl_idname = "img3d.variations"
    bl_label = "Variations"
    bl_options = {"REGISTER", "UNDO"}

    count: IntProperty(name="Count", min=1, max=defaults.MAX_BATCH, default=4)

    def session(self, context, obj):
        return self.rerun(context, obj, seed=new_seed(int(obj["img3d_seed"])), batch=self.count)


class IMG3D_OT_redecode(_ResultOperator, bpy.types.Operator):
    """Decode the selected result's saved latents again at another grid size (no sampling)"""

    bl_idname = "img3d.redecode"
    bl_label = "Re-decode"
    bl_options = {"REGISTER", "UNDO"}

    grid_size: IntProperty(
        name="Grid Size",
        min=defaults.MIN_GRID_SIZE,
        max=defaults.MAX_GRID_SIZE,
        default=defaults.DEFAULT_GRID_SIZE,
    )

    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        if "img3d_latents" not in context.active_object:
            cls.poll_message_set("This result has no saved latents")
            return False
        return True

    def invoke(self, context, event):
        if not self.properties.is_property_set("grid_size"):
            self.grid_size = context.scene.img3d.grid_size
        return self.execute(context)

    def session(self, context, obj):
        latents = Path(bpy.path.abspath(obj["img3d_latents"]))
        if not latents.is_file():
            raise ConfigError(f"The saved latents {latents} are gone: generate again instead.")
        record = record_of(obj)
        request = decode_request(record, self.grid_size)
        return sessions.DecodeSession(latents, request, self.placement(context, obj), record=record)


def decode_request(record: Optional[dict[str, Any]], grid_size: int) -> defaults.Request:
    """A request for ``pipeline.decode_saved``: the record's mesh settings, today's machine."""
    from dataclasses import replace

    from ..prefs import get_preferences

    prefs = get_preferences()
    request = defaults.Request(name=(record or {}).get("name"))
    if record is not None:
        request.mesh = defaults.MeshSettings(**record["mesh"])
        request.generation.model = record["generation"].get("model")
        request.generation.device = record["generation"].get("device", "auto")
    request.generation = replace(
        request.generation,
        grid_size=grid_size,
        cache_dir=str(prefs.resolved_cache_dir()),
        allow_download=prefs.downloads_allowed(),
    )
    request.validate_settings()
    return request


class IMG3D_OT_copy_settings(bpy.types.Operator):
    """Put the selected result's settings (input, seed, sampling, mesh) into the panel"""

    bl_idname = "img3d.copy_settings"
    bl_label = "Copy Settings"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if generated_object(context) is None:
            cls.poll_message_set("Select an object made by Img3D")
            return False
        return True

    def execute(self, context):
        obj = generated_object(context)
        try:
            copy_record_to_scene(record_of(obj), context.scene.img3d)
        except (Img3DError, KeyError, TypeError) as exc:
            self.report({"ERROR"}, f"Can't copy the settings of {obj.name}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Settings of {obj.name} copied to the panel")
        return {"FINISHED"}


class IMG3D_OT_import_result(tasks.ModalTask, bpy.types.Operator):
    """Import a Shap-E GLB or saved latents (.npy) made elsewhere, with its settings"""

    bl_idname = "img3d.import_result"
    bl_label = "Import Shap-E Result"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default="*.glb;*.npy", options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        try:
            if not path.is_file():
                raise ConfigError(f"{path} does not exist: pick a .glb or .npy file.")
            if path.suffix.lower() == ".glb":
                obj = import_glb_result(context, path)
                self.report({"INFO"}, f"Imported {obj.name}")
                return {"FINISHED"}
            if path.suffix.lower() != ".npy":
                raise ConfigError(f"{path.name}: import a .glb or a latents .npy file.")
            request = decode_request(None, context.scene.img3d.grid_size)
            session = sessions.DecodeSession(
                path, request, import_options(context), output_dir=output_folder(context)
            )
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if context.window is None or bpy.app.background:
            return tasks.run_to_end(self, context, session)
        return self.start_modal(context, session)


def import_glb_result(context, path: Path) -> bpy.types.Object:
    """Import one GLB made by Img3D (or any single-mesh GLB) the way Generate does."""
    from ...core.mesh.meshdata import MeshData
    from ...core.result_files import existing_files, read_glb_extras
    from ..scene import import_glb, result_properties, select_only

    extras = read_glb_extras(path)
    settings = extras.get("settings") if isinstance(extras.get("settings"), dict) else {}
    name = str(extras.get("name") or path.stem)
    options = import_options(context)
    location = context.scene.cursor.location if options.at_cursor else (0.0, 0.0, 0.0)
    obj = import_glb(context, path, name=name, location=location, smooth=options.smooth)
    files = existing_files(path)
    stand_in = MeshData(vertices=[[0.0, 0.0, 0.0]], faces=[], name=name, metadata=settings)
    metrics = extras.get("metrics") if isinstance(extras.get("metrics"), dict) else {}
    for key, value in result_properties(stand_in, metrics, settings, files).items():
        obj[key] = value
    select_only(context, [obj])
    return obj


def menu_func_import(self, context) -> None:
    self.layout.operator(IMG3D_OT_import_result.bl_idname, text="Shap-E Result (.glb, .npy)")


CLASSES = (
    IMG3D_OT_generate_again,
    IMG3D_OT_variations,
    IMG3D_OT_redecode,
    IMG3D_OT_copy_settings,
    IMG3D_OT_import_result,
)
