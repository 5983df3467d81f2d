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
from typing import Any, Optional

import bpy

from ..core.backend import Backend, get_backend
from ..core.jobs import format_duration
from ..core.settings import Request
from . import tasks
from .requests import ImportOptions
from .tasks import CANCELLED, FAILED, FINISHED, RUNNING

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "RUNNING",
    "GenerateSession",
    "ImportOptions",
    "active_session",
    "cancel_active",
    "preferred_backend",
]


def preferred_backend() -> Backend:
    """The backend the preferences choose (today: local, keeping the model warm or not)."""
    from .prefs import get_preferences

    return get_backend("local", keep_model_loaded=bool(get_preferences().keep_model_loaded))


class GenerateSession(tasks.Task):
    """One generation from start to scene import; see the module docstring."""

    kind = "generate"
    busy_message = "A generation is already running: wait for it or cancel it first."
    cancelled_text = "Generation cancelled"
    failed_text = "Generation failed"

    def __init__(
        self, request: Request, options: ImportOptions, backend: Optional[Backend] = None
    ) -> None:
        super().__init__()
        self.request = request
        self.options = options
        self.backend = backend if backend is not None else preferred_backend()
        self.objects: list[bpy.types.Object] = []

    def work(self, progress, cancel):
        return self.backend.submit(self.request, progress, cancel)

    def on_result(self, context: bpy.types.Context, result: Any) -> str:
        self.objects = import_result(context, result, self.options)
        if getattr(result, "model_input", None) is not None:
            from .scene import store_preview_image

            context.window_manager.img3d_tasks.preview_image = store_preview_image(
                result.model_input
            )
        return summarise(result, time.monotonic() - self.started_at)

    def report_text(self) -> str:
        return "Generated " + ", ".join(obj.name for obj in self.objects)


def import_result(context: bpy.types.Context, result: Any, options: ImportOptions):
    """Put the result's meshes in the scene (main thread only)."""
    from .scene import add_mesh_objects

    return add_mesh_objects(
        context,
        result.meshes,
        result.metrics,
        at_cursor=options.at_cursor,
        smooth=options.smooth,
        settings=result.settings,
    )


def summarise(result: Any, seconds: float) -> str:
    if not result.meshes:
        return "Nothing generated"
    metrics = result.metrics[0]
    closed = "watertight" if metrics.get("watertight") else "open"
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
