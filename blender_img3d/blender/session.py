"""A generation job seen from Blender: WindowManager state, scene import, one job at a time.

:class:`GenerateSession` is what the modal operator wraps and what tests drive
directly: ``start()`` launches ``core.pipeline.run`` on a worker thread
(which never touches bpy), ``tick()`` runs on Blender's main thread — drains
the job's queue within a small budget, mirrors progress onto
``window_manager.img3d_job`` and, when the result arrives, imports it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import bpy

from ..core.errors import Img3DError
from ..core.jobs import Job, format_duration
from ..core.settings import Request

log = logging.getLogger(__name__)

TICK_BUDGET_SECONDS = 0.002
JOIN_TIMEOUT_SECONDS = 30.0

RUNNING, FINISHED, CANCELLED, FAILED = "RUNNING", "FINISHED", "CANCELLED", "FAILED"


@dataclass
class ImportOptions:
    at_cursor: bool = True
    smooth: bool = True


def run_pipeline(request: Request, progress, cancel):
    """The worker's body (a module function so tests can swap in a fake pipeline)."""
    from ..core import pipeline

    return pipeline.run(request, progress=progress, cancel=cancel)


class GenerateSession:
    """One job from start to scene import; see the module docstring."""

    def __init__(
        self,
        request: Request,
        options: ImportOptions,
        work: Optional[Callable[..., Any]] = None,
        release_model: bool = False,
    ) -> None:
        self.request = request
        self.options = options
        self._work = work or run_pipeline
        self._release_model = release_model
        self.job = Job(self._run)
        self.state = RUNNING
        self.objects: list[bpy.types.Object] = []
        self.error: Optional[str] = None
        self.result: Any = None
        self.started_at = 0.0

    def _run(self, progress, cancel):
        """The worker thread's body; frees the model afterwards unless it should stay warm."""
        try:
            return self._work(self.request, progress, cancel)
        finally:
            if self._release_model:
                from ..core.shap_e.loading import release

                release()

    # --- life cycle ------------------------------------------------------------
    def start(self, window_manager: bpy.types.WindowManager) -> "GenerateSession":
        global _ACTIVE
        if _ACTIVE is not None and _ACTIVE.state == RUNNING:
            raise Img3DError("A generation is already running: wait for it or cancel it first.")
        _ACTIVE = self
        self.started_at = time.monotonic()
        job_state = window_manager.img3d_job
        job_state.running = True
        job_state.phase = "starting"
        job_state.progress = 0.0
        job_state.eta_seconds = -1.0
        job_state.message = "Starting..."
        job_state.last_error = ""
        self.job.start()
        return self

    def cancel(self) -> None:
        self.job.cancel()

    def tick(self, context: bpy.types.Context, budget: float = TICK_BUDGET_SECONDS) -> str:
        """Drain messages (≤ ``budget`` s); import on success. Returns the session state."""
        if self.state != RUNNING:
            return self.state
        job_state = context.window_manager.img3d_job
        for message in self.job.poll(budget):
            if message.kind == "progress":
                update = message.payload
                job_state.phase = update.phase
                job_state.progress = update.fraction
                job_state.eta_seconds = -1.0 if update.eta_seconds is None else update.eta_seconds
                job_state.message = update.label()
            elif message.kind == "result":
                self._finish_with_result(context, message.payload)
            elif message.kind == "cancelled":
                self._end(context, CANCELLED, "Cancelled")
            elif message.kind == "error":
                self.error = str(message.payload)
                job_state.last_error = self.error
                self._end(context, FAILED, "Failed")
        return self.state

    def run_to_end(self, context: bpy.types.Context, timeout: Optional[float] = None) -> str:
        """Tick until the job ends (scripts and tests without an event loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.tick(context, budget=0.05) == RUNNING:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError("generation did not finish in time")
            time.sleep(0.02)
        return self.state

    # --- endings ----------------------------------------------------------------
    def _finish_with_result(self, context: bpy.types.Context, result: Any) -> None:
        self.result = result
        try:
            self.objects = import_result(context, result, self.options)
        except Img3DError as exc:
            self.error = str(exc)
            context.window_manager.img3d_job.last_error = self.error
            self._end(context, FAILED, "Failed")
            return
        if getattr(result, "model_input", None) is not None:
            from .scene import store_preview_image

            context.window_manager.img3d_job.preview_image = store_preview_image(result.model_input)
        summary = summarise(result, time.monotonic() - self.started_at)
        context.window_manager.img3d_job.last_summary = summary
        self._end(context, FINISHED, summary)

    def _end(self, context: bpy.types.Context, state: str, message: str) -> None:
        global _ACTIVE
        self.state = state
        self.job.join(JOIN_TIMEOUT_SECONDS)
        job_state = context.window_manager.img3d_job
        job_state.running = False
        job_state.message = message
        job_state.progress = 1.0 if state == FINISHED else job_state.progress
        if _ACTIVE is self:
            _ACTIVE = None


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


_ACTIVE: Optional[GenerateSession] = None


def active_session() -> Optional[GenerateSession]:
    return _ACTIVE if _ACTIVE is not None and _ACTIVE.state == RUNNING else None


def cancel_active() -> bool:
    """Cancel and join the running job, if any (file load, disable). True if one was stopped."""
    session = _ACTIVE
    if session is None:
        return False
    session.cancel()
    session._end(bpy.context, CANCELLED, "Cancelled")  # joins the worker
    return True
