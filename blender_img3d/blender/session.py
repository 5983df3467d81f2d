"""A generation seen from Blender: a background task that ends with a scene import.

:class:`GenerateSession` is the ``generate`` :class:`~.tasks.Task`: its worker
calls ``backend.submit`` (``core.backend``; the local backend unless told
otherwise) and never touches bpy; on the main thread the task's tick mirrors
progress onto ``window_manager.img3d_tasks.generate`` and, when the result
arrives, imports it. The modal operator, the Python API and tests all drive
this one class.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import bpy

from ..core.backend import Backend, get_backend
from ..core.jobs import format_duration
from ..core.settings import Request
from . import tasks
from .requests import ImportOptions, unsaved_results_folder
from .tasks import CANCELLED, FAILED, FINISHED, RUNNING

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "RUNNING",
    "DecodeSession",
    "GenerateSession",
    "ImportOptions",
    "active_session",
    "cancel_active",
    "preferred_backend",
]


def preferred_backend() -> Backend:
    """The backend the preferences choose: the GPU server, or local (model kept warm or not)."""
    from .prefs import get_preferences

    prefs = get_preferences()
    if prefs.remote:
        return prefs.remote_backend()
    return get_backend("local", keep_model_loaded=bool(prefs.keep_model_loaded))


class GenerateSession(tasks.Task):
    """One generation from start to scene import; see the module docstring.

    The worker also writes every variant's files into ``output_dir``
    (``core.result_files``: GLB, latents, model input); the main thread then imports
    each GLB with Blender's glTF importer. A cancel that arrives after the
    files were written removes them (the worker's own check, or :meth:`discard`
    when the cancel came after it): a cancelled run leaves nothing behind. The
    session ends at the first tick after a cancel (``ends_on_cancel``): a first
    model load can't stop mid-way, and a new Generate shouldn't wait for it.
    """

    kind = "generate"
    ends_on_cancel = True
    busy_message = "A generation is already running: wait for it or cancel it first."
    cancelled_text = "Generation cancelled"
    failed_text = "Generation failed"

    def __init__(
        self,
        request: Request,
        options: ImportOptions,
        backend: Optional[Backend] = None,
        output_dir: Optional[Path] = None,
    ) -> None:
        super().__init__()
        self.request = request
        self.options = options
        self.backend = backend if backend is not None else preferred_backend()
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.files: list[Any] = []
        self.objects: list[bpy.types.Object] = []
        self.bake_size = options.bake_size

    def start(self, window_manager: bpy.types.WindowManager) -> "GenerateSession":
        from ..core.result_files import check_output_folder
        from .requests import output_folder

        if self.output_dir is None:
            self.output_dir = output_folder(bpy.context)
        check_output_folder(self.output_dir)  # a read-only folder costs no generation
        super().start(window_manager)
        return self

    def produce(self, progress, cancel):
        """The result to write and import (the backend's; re-decoding overrides this)."""
        return self.backend.submit(self.request, progress, cancel)

    def work(self, progress, cancel):
        from ..core.progress import raise_if_cancelled
        from ..core.result_files import write_variants

        result = self.produce(progress, cancel)
        raise_if_cancelled(cancel)
        # A cancel from here on: Task's last look (or the tick) discards these files.
        self.files = write_variants(result, self.output_dir, bake_size=self.bake_size)
        return result

    def discard(self, result: Any) -> None:
        """Delete every file this run wrote (GLB, latents and their JSON, model input)."""
        for files in self.files:
            for path in files.paths():
                path.unlink(missing_ok=True)
        self.files = []

    def on_result(self, context: bpy.types.Context, result: Any) -> str:
        import json

        # Everything that can fail without bpy comes before the import: a failed
        # Generate must not leave a half-annotated object in the scene.
        records = [self.rerun_record(files) for files in self.files]
        self.objects = import_result(context, result, self.files, self.options)
        for obj, record in zip(self.objects, records):
            if record is not None:
                obj["img3d_request"] = json.dumps(record, default=str)
        if getattr(result, "model_input", None) is not None:
            from .requests import describe_preparation
            from .scene import store_preview_image

            state = context.window_manager.img3d_tasks
            state.preview_image = store_preview_image(result.model_input)
            if result.input_report and "bbox" in result.input_report:
                state.preview_report = "\n".join(describe_preparation(result.input_report))
                state.preview_warning = result.input_report.get("warning") or ""
        summary = summarise(result, time.monotonic() - self.started_at)
        if self.output_dir is not None and self.output_dir == unsaved_results_folder():
            summary += f"; files in {self.output_dir} until the .blend is saved"
        return summary

    def rerun_record(self, files: Any) -> Optional[dict[str, Any]]:
        """What the new object keeps to be generated again (see ``requests.rerun_record``)."""
        from .requests import rerun_record

        return rerun_record(self.request, files)

    def on_end(self, context: bpy.types.Context) -> None:
        record_history(context, self)

    def report_text(self) -> str:
        return "Generated " + ", ".join(obj.name for obj in self.objects)


class DecodeSession(GenerateSession):
    """Re-decode saved latents (another grid size, say) into new files and objects."""

    cancelled_text = "Re-decode cancelled"
    failed_text = "Re-decode failed"

    def __init__(
        self,
        latents: Path,
        request: Request,
        options: ImportOptions,
        record: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(request, options, **kwargs)
        self.latents = Path(latents)
        self.record = record

    def rerun_record(self, files: Any) -> Optional[dict[str, Any]]:
        """The source's record at the new grid size (None when decoding foreign latents)."""
        if self.record is None:
            return None
        import copy

        record = copy.deepcopy(self.record)
        record["generation"]["grid_size"] = self.request.generation.grid_size
        return record

    def produce(self, progress, cancel):
        from ..core import pipeline

        return pipeline.decode_saved(self.latents, self.request, progress=progress, cancel=cancel)


def import_result(
    context: bpy.types.Context, result: Any, files: list[Any], options: ImportOptions
) -> list[bpy.types.Object]:
    """Import each variant's GLB, name and annotate it, lay the variants out (main thread)."""
    from mathutils import Vector

    from .scene import import_glb, lay_out, result_properties, select_only

    if options.location is not None:
        start = Vector(options.location)
    elif options.at_cursor:
        start = Vector(context.scene.cursor.location)
    else:
        start = Vector((0.0, 0.0, 0.0))
    objects = []
    try:
        for mesh, metrics, variant_files in zip(result.meshes, result.metrics, files):
            obj = import_glb(
                context, variant_files.glb, name=mesh.name, location=start, smooth=options.smooth
            )
            objects.append(obj)
            for key, value in result_properties(
                mesh, metrics, result.settings, variant_files
            ).items():
                obj[key] = value
    except Exception:
        for obj in objects:
            bpy.data.objects.remove(obj)
        raise
    lay_out(objects, start)
    select_only(context, objects)
    return objects


def record_history(context: bpy.types.Context, session: GenerateSession) -> None:
    """Add the session's ending to the scene's history (newest first, a few kept)."""
    from .props import HISTORY_KEPT

    history = context.scene.img3d.history
    when = time.strftime("%H:%M")
    status = session.state.capitalize()
    rows = session.objects or [None]
    for obj in reversed(rows):
        entry = history.add()
        entry.name = obj.name if obj is not None else _request_label(session.request)
        entry.object = obj
        entry.seed = int(obj["img3d_seed"]) if obj is not None else session.request.generation.seed
        entry.grid_size = session.request.generation.grid_size
        entry.when = when
        entry.status = status
        entry.detail = session.summary if obj is not None else (session.error or status)
        entry.glb = str(obj.get("img3d_glb", "")) if obj is not None else ""
        history.move(len(history) - 1, 0)
    while len(history) > HISTORY_KEPT:
        history.remove(len(history) - 1)


def _request_label(request: Request) -> str:
    from ..core.pipeline import source_label

    try:
        return source_label(request)
    except Exception:  # a label is cosmetic: never fail an ending over it
        return "generation"


def summarise(result: Any, seconds: float) -> str:
    if not result.meshes:
        return "Nothing generated"
    metrics = result.metrics[0]
    from ..core.mesh.metrics import closedness_label

    closed = closedness_label(metrics)
    manifold = "manifold" if metrics.get("edge_manifold") else "non-manifold"
    count = f"{len(result.meshes)} variants, " if len(result.meshes) > 1 else ""
    return (
        f"{count}{metrics.get('faces', 0):,} faces, {closed}, {manifold}, "
        f"{format_duration(seconds)}"
    )


def active_session() -> Optional[GenerateSession]:
    task = tasks.active(GenerateSession.kind)
    return task if isinstance(task, GenerateSession) else None


def cancel_active() -> bool:
    """Flag the running generation to stop; safe from any thread. True if one was running.

    Nothing waits here: the worker stops at its next check and the tick (the
    modal timer, or :func:`tasks.finish_in_background`) ends the session.
    """
    return tasks.cancel(GenerateSession.kind)
