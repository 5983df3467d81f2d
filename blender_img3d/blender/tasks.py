"""Background work in Blender: one task state, one task runner, one modal-timer mixin.

Four long jobs run off Blender's main thread — the dependency install, the
model download, the generation and a big export. Each is a :class:`Task` over a
``core.jobs.Job``: the worker thread never touches bpy, it reports through the
job's queue, and :meth:`Task.tick` (main thread only) mirrors what arrived onto
``window_manager.img3d_tasks.<kind>`` — one :class:`IMG3D_TaskState` per kind,
which the panel and the preferences draw. The operators that run a task with a
window share :class:`ModalTask`: the timer, ESC, the redraw, and removing the
timer however the task ends; without a window they call :func:`run_to_end`, so
both paths run the same code.

Cancelling only flags the job (:meth:`Task.cancel` is safe from any thread and
writes no bpy data); the next tick shows "Cancelling…", and the task ends once
its worker has stopped — the main thread never waits on a join. When nothing
else will tick (a file load dropped the modal operator), :func:`finish_in_background`
keeps ticking from an app timer until the worker is gone.

A cancel is final. Once accepted, nothing of the run remains: a result that
raced it (the worker's last message already queued when the cancel came, before
the tick) is handed to :meth:`Task.discard`, which deletes its files. A cancel
that comes after the tick took the result is refused (``cancel`` returns False)
and the run ends as finished. A task with ``ends_on_cancel`` (generation) does
not even wait for its worker: the tick after the cancel ends it, so the next
run can start at once, and the old worker winds down on an app timer
(:func:`wind_down`), its result, if it still makes one, discarded.

The live ``Task`` objects sit in one table keyed by kind, because RNA
properties can't hold Python objects; everything a user sees is in the
WindowManager state.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ClassVar, Optional

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    FloatProperty,
    PointerProperty,
    StringProperty,
)

from ..core.errors import CancelledError, Img3DError
from ..core.jobs import FINAL_KINDS, Job, JobMessage, ProgressUpdate

log = logging.getLogger(__name__)

KINDS = ("generate", "download", "install", "export")
RUNNING, FINISHED, CANCELLED, FAILED = "RUNNING", "FINISHED", "CANCELLED", "FAILED"
CANCELLING_TEXT = "Cancelling…"
TICK_BUDGET_SECONDS = 0.002
LOG_LINES_KEPT = 200
BACKGROUND_TICK_SECONDS = 0.1


class IMG3D_TaskState(bpy.types.PropertyGroup):
    """What one kind of task is doing or last did (transient: on the WindowManager)."""

    running: BoolProperty(default=False)
    cancelling: BoolProperty(default=False)
    phase: StringProperty(default="")
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    eta_seconds: FloatProperty(default=-1.0)
    message: StringProperty(default="")
    last_error: StringProperty(default="")
    last_summary: StringProperty(default="")
    log: StringProperty(default="", description="The last output lines, newline-separated")

    def log_lines(self) -> list[str]:
        return self.log.splitlines()


class IMG3D_CheckEntry(bpy.types.PropertyGroup):
    """One line of the last system check (``name`` is the property group's own)."""

    ok: BoolProperty(default=True)
    detail: StringProperty(default="")
    advice: StringProperty(default="")


class IMG3D_Tasks(bpy.types.PropertyGroup):
    """``window_manager.img3d_tasks``: every background task's state and the last check."""

    generate: PointerProperty(type=IMG3D_TaskState)
    download: PointerProperty(type=IMG3D_TaskState)
    install: PointerProperty(type=IMG3D_TaskState)
    export: PointerProperty(type=IMG3D_TaskState)
    preview_image: StringProperty(default="", description="Image holding what the model saw")
    preview_report: StringProperty(default="", description="What preparing the input did")
    preview_warning: StringProperty(
        default="", description="Why the background was kept, or why the cut is doubtful"
    )
    system_check: CollectionProperty(type=IMG3D_CheckEntry)


CLASSES = (IMG3D_TaskState, IMG3D_CheckEntry, IMG3D_Tasks)


def register_properties() -> None:
    bpy.types.WindowManager.img3d_tasks = PointerProperty(type=IMG3D_Tasks)


def unregister_properties() -> None:
    del bpy.types.WindowManager.img3d_tasks


def state_of(kind: str, window_manager: Optional[bpy.types.WindowManager] = None):
    """The :class:`IMG3D_TaskState` of ``kind`` (main thread only)."""
    return getattr((window_manager or bpy.context.window_manager).img3d_tasks, kind)


# --- the running tasks --------------------------------------------------------------
_RUNNING: dict[str, "Task"] = {}


def active(kind: str) -> Optional["Task"]:
    """The running task of ``kind``, if any."""
    task = _RUNNING.get(kind)
    return task if task is not None and task.state == RUNNING else None


def cancel(kind: str) -> bool:
    """Flag the running task of ``kind`` to stop; safe from any thread.

    True when the cancel was accepted: a task runs and hasn't yet taken its result.
    """
    task = active(kind)
    return task is not None and task.cancel()


def abandon_all() -> None:
    """Flag every task to stop and forget them (``unregister``: nothing will tick again).

    The workers are daemon threads that stop at their next cancel check; their
    results are dropped, and no WindowManager state is written (it is going away).
    """
    for task in list(_RUNNING.values()):
        task.cancel()
        task.state = CANCELLED
    _RUNNING.clear()
    for ticker in list(_BACKGROUND_TICKERS):
        if bpy.app.timers.is_registered(ticker):
            bpy.app.timers.unregister(ticker)
    _BACKGROUND_TICKERS.clear()


class Task:
    """One background job of a ``kind``; subclasses give ``work`` and how it ends.

    Worker side (``work`` and what it calls): :meth:`report` and :meth:`log`
    only queue messages. Main thread: :meth:`start`, :meth:`tick`,
    :meth:`run_to_end`. ``cancel`` from anywhere.
    """

    kind: ClassVar[str] = ""
    busy_message: ClassVar[str] = "This task is already running: wait for it or cancel it first."
    start_text: ClassVar[str] = "Starting…"
    done_text: ClassVar[str] = "Done"
    cancelled_text: ClassVar[str] = "Cancelled"
    cancelled_hint: ClassVar[str] = ""  # shown as the task's error after a cancel, if set
    failed_text: ClassVar[str] = "Failed"
    # End at the first tick after a cancel, leaving the worker to wind down (see wind_down):
    # for work that may sit in an uninterruptible call (a first model load) and writes
    # nothing once cancelled.
    ends_on_cancel: ClassVar[bool] = False

    def __init__(self) -> None:
        self.job = Job(self._work_to_the_end, name=f"img3d-{self.kind}")
        self.state = RUNNING
        self.error: Optional[str] = None
        self.result: Any = None
        self.summary = ""
        self.started_at = 0.0
        self.fraction = 0.0  # the newest reported fraction, written by the worker
        self._final: Optional[JobMessage] = None
        self.ticked_in_background = False  # see finish_in_background
        # Taken by cancel() and by the tick that accepts the result: one of them wins.
        self._decision = threading.Lock()
        self._result_taken = False

    # --- worker side ------------------------------------------------------------------
    def work(self, progress, cancel) -> Any:
        """The worker thread's body; never touches bpy. Raise typed errors to fail."""
        raise NotImplementedError

    def _work_to_the_end(self, progress, cancel) -> Any:
        """``work``, then one last look at the cancel: a run cancelled while it finished
        discards its own result here, so even a task nobody ticks any more (``abandon_all``)
        leaves no file."""
        result = self.work(progress, cancel)
        if cancel.is_set():
            self.discard(result)
            raise CancelledError()
        return result

    def report(self, fraction: Optional[float] = None, text: Optional[str] = None) -> None:
        """Queue a progress fraction and/or status line for the panel."""
        if fraction is not None:
            self.fraction = min(1.0, max(0.0, float(fraction)))
        self.job.messages.put(JobMessage("status", (fraction, text)))

    def log(self, line: str) -> None:
        """Queue one output line for the panel's log."""
        self.job.messages.put(JobMessage("log", line))

    # --- main thread --------------------------------------------------------------------
    def start(self, window_manager: bpy.types.WindowManager) -> "Task":
        if active(self.kind) is not None:
            raise Img3DError(self.busy_message)
        _RUNNING[self.kind] = self
        self.started_at = time.monotonic()
        state = state_of(self.kind, window_manager)
        state.running = True
        state.cancelling = False
        state.phase = "starting"
        state.progress = 0.0
        state.eta_seconds = -1.0
        state.message = self.start_text
        state.last_error = ""
        state.log = ""
        self.job.start()
        return self

    def cancel(self) -> bool:
        """Ask the worker to stop (any thread; no bpy data is written here).

        False when it is too late: the main thread has already taken the result, so
        the run ends as finished.
        """
        with self._decision:
            if self._result_taken:
                return False
            self.job.cancel()
            return True

    @property
    def cancelling(self) -> bool:
        return self.job.cancel_event.is_set()

    def tick(self, context: bpy.types.Context, budget: float = TICK_BUDGET_SECONDS) -> str:
        """Mirror queued messages (≤ ``budget`` s) onto the task state; end when the worker has.

        Returns the task's state (``RUNNING`` until the worker thread is gone).
        """
        if self.state != RUNNING:
            return self.state
        state = state_of(self.kind, context.window_manager)
        for message in self.job.poll(budget):
            if message.kind == "progress":
                self.on_progress(state, message.payload)
            elif message.kind == "status":
                fraction, text = message.payload
                if fraction is not None:
                    state.progress = min(1.0, max(0.0, fraction))
                if text is not None and not self.cancelling:
                    state.message = text
            elif message.kind == "log":
                lines = state.log_lines()[-(LOG_LINES_KEPT - 1) :] + [message.payload]
                state.log = "\n".join(lines)
            else:
                self._final = message
        if self.cancelling and not state.cancelling:
            state.cancelling = True
            state.message = CANCELLING_TEXT
        if self._final is not None and not self.job.alive:
            self._finish(context, self._final)
        elif self.cancelling and self.ends_on_cancel:
            self._end(context, CANCELLED, self.cancelled_text)
            wind_down(self)
        return self.state

    def run_to_end(self, context: bpy.types.Context, timeout: Optional[float] = None) -> str:
        """Tick until the task ends (background mode, scripts and tests: no event loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.tick(context, budget=0.05) == RUNNING:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"the {self.kind} task did not finish in time")
            time.sleep(0.02)
        return self.state

    # --- endings (main thread) -------------------------------------------------------
    def on_progress(self, state, update: ProgressUpdate) -> None:
        state.phase = update.phase
        state.progress = update.fraction
        state.eta_seconds = -1.0 if update.eta_seconds is None else update.eta_seconds
        if not self.cancelling:
            state.message = update.label()

    def on_result(self, context: bpy.types.Context, result: Any) -> str:
        """Use the worker's result; return the summary line. Raise ``Img3DError`` to fail."""
        return self.done_text

    def report_text(self) -> str:
        """The operator's one-line report when the task finished."""
        return self.summary or self.done_text

    def on_end(self, context: bpy.types.Context) -> None:
        """Called once, whatever the ending, after the state is written."""

    def discard(self, result: Any) -> None:
        """Remove what the worker made for ``result`` (its files): a cancel came first.

        Runs on the main thread, or on the timer of :func:`wind_down`, once the worker
        has ended. Tasks that write files override it.
        """

    def _finish(self, context: bpy.types.Context, message: JobMessage) -> None:
        with self._decision:
            cancelled = self.cancelling
            self._result_taken = message.kind == "result" and not cancelled
        if message.kind == "result" and cancelled:
            # The cancel was accepted before this tick took the result: the result is
            # dropped, files included, as if the worker had stopped a step earlier.
            self.discard(message.payload)
            self._end(context, CANCELLED, self.cancelled_text)
        elif message.kind == "result":
            self.result = message.payload
            try:
                self.summary = self.on_result(context, message.payload)
            except Img3DError as exc:
                self._fail(context, str(exc))
                return
            except ImportError as exc:
                # A package outside what this Blender is guaranteed to have: one line that
                # says which and how to get it, never a traceback on the artist's console.
                log.debug("%s: import failed while using the result", self.kind, exc_info=True)
                self._fail(context, _missing_package_text(exc))
                return
            self._end(context, FINISHED, self.summary)
        elif message.kind == "cancelled":
            self._end(context, CANCELLED, self.cancelled_text)
        else:
            self._fail(context, str(message.payload))

    def _fail(self, context: bpy.types.Context, error: str) -> None:
        self.error = error
        state_of(self.kind, context.window_manager).last_error = error
        self._end(context, FAILED, self.failed_text)

    def _end(self, context: bpy.types.Context, outcome: str, message: str) -> None:
        self.state = outcome
        state = state_of(self.kind, context.window_manager)
        state.running = False
        state.cancelling = False
        state.message = message
        if outcome == FINISHED:
            state.progress = 1.0
            state.last_summary = self.summary
        elif outcome == CANCELLED and self.cancelled_hint:
            state.last_error = self.cancelled_hint
        if _RUNNING.get(self.kind) is self:
            del _RUNNING[self.kind]
        self.on_end(context)


def _missing_package_text(error: ImportError) -> str:
    """One line for a result step that needed a package this Blender doesn't have."""
    from ..core.system.requirements import RUNTIME_MODULES

    module = (error.name or "").partition(".")[0] or "a package"
    package = RUNTIME_MODULES.get(module, module)
    return (
        f"This step needs the Python package {package}, which this Blender doesn't have: "
        "Preferences > Add-ons > Img3D > Install Dependencies."
    )


def run_to_end(operator: bpy.types.Operator, context: bpy.types.Context, task: Task) -> set[str]:
    """The synchronous path of a task operator: start, tick to the end, report."""
    try:
        task.start(context.window_manager)
    except Img3DError as exc:
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    task.run_to_end(context)
    return report_end(operator, task)


def report_end(operator: bpy.types.Operator, task: Task) -> set[str]:
    """The operator's report and return value for an ended task."""
    if task.state == FINISHED:
        operator.report({"INFO"}, task.report_text())
        return {"FINISHED"}
    if task.state == FAILED:
        operator.report({"ERROR"}, task.error or task.failed_text)
    else:
        operator.report({"WARNING"}, task.cancelled_text)
    return {"CANCELLED"}


# --- finishing without an operator -------------------------------------------------
_BACKGROUND_TICKERS: list[Any] = []


def finish_in_background(task: Task) -> None:
    """Keep ticking ``task`` from an app timer until its worker ends (main thread only).

    For when the operator that ticked it is gone (a file load removes modal
    handlers): the state is cleaned up once the worker stops, without waiting here.
    """
    if task.state != RUNNING or task.ticked_in_background:
        return
    task.ticked_in_background = True

    def ticker() -> Optional[float]:
        if task.tick(bpy.context) == RUNNING:
            return BACKGROUND_TICK_SECONDS
        if ticker in _BACKGROUND_TICKERS:
            _BACKGROUND_TICKERS.remove(ticker)
        return None

    _BACKGROUND_TICKERS.append(ticker)
    bpy.app.timers.register(ticker, first_interval=BACKGROUND_TICK_SECONDS, persistent=True)


_WINDING_DOWN: list["Task"] = []


def wind_down(task: Task) -> None:
    """Watch the worker of a task that already ended as cancelled until it stops.

    Its messages are dropped; a result it still makes goes to :meth:`Task.discard`,
    so a cancelled run leaves no file however late its worker finishes. Nothing
    here touches the task's WindowManager state (a new run may own it by then).
    """
    if task in _WINDING_DOWN:
        return
    _WINDING_DOWN.append(task)

    def ticker() -> Optional[float]:
        for message in task.job.poll(TICK_BUDGET_SECONDS):
            if message.kind in FINAL_KINDS:
                task._final = message
        if task.job.alive:
            return BACKGROUND_TICK_SECONDS
        if task._final is not None and task._final.kind == "result":
            task.discard(task._final.payload)
        task._final = None
        if task in _WINDING_DOWN:
            _WINDING_DOWN.remove(task)
        if ticker in _BACKGROUND_TICKERS:
            _BACKGROUND_TICKERS.remove(ticker)
        return None

    _BACKGROUND_TICKERS.append(ticker)
    bpy.app.timers.register(ticker, first_interval=BACKGROUND_TICK_SECONDS, persistent=True)


def winding_down() -> list[Task]:
    """Cancelled tasks whose workers haven't stopped yet (tests, the status line)."""
    return list(_WINDING_DOWN)


class ModalTask:
    """Mixin for the operators that run a :class:`Task` with a window.

    ``start_modal`` adds the timer and the modal handler; ``modal`` ticks the
    task, redraws, and removes the timer however the task ends (finished,
    failed or cancelled); ESC cancels. ``cancel`` (Blender dropping the
    operator: a file load, a closed window) flags the task and leaves the
    clean-up to :func:`finish_in_background`.
    """

    timer_interval: ClassVar[float] = 0.1

    def start_modal(self, context: bpy.types.Context, task: Task) -> set[str]:
        try:
            task.start(context.window_manager)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._task = task
        self._timer = context.window_manager.event_timer_add(
            self.timer_interval, window=context.window
        )
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._task.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        outcome = self._task.tick(context)
        redraw(context)
        if outcome == RUNNING:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        return report_end(self, self._task)

    def cancel(self, context):
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        task = getattr(self, "_task", None)
        if task is not None and task.state == RUNNING:
            task.cancel()
            finish_in_background(task)


def redraw(context: bpy.types.Context) -> None:
    """Redraw the areas that show task progress (3D View sidebar, Preferences)."""
    window_manager = context.window_manager
    if window_manager is None:
        return
    for window in window_manager.windows:
        if window.screen is None:
            continue
        for area in window.screen.areas:
            if area.type in {"PREFERENCES", "VIEW_3D"}:
                area.tag_redraw()
