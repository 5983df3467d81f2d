"""One generation job on a worker thread, talking to its owner only through a queue.

The worker runs any callable ``work(progress, cancel)`` (in practice
``pipeline.run``); it never touches bpy. The owner — Blender's modal operator,
a test, a script — calls :meth:`Job.poll` from its own thread to drain
messages within a time budget, so a UI tick stays cheap (≤ 2 ms).

Messages are :class:`JobMessage` with ``kind`` one of ``"progress"``,
``"result"``, ``"error"`` or ``"cancelled"``; the last three end the job.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import CancelledError, Img3DError
from .progress import Phase, ProgressCallback

log = logging.getLogger(__name__)

Work = Callable[[ProgressCallback, threading.Event], Any]

FINAL_KINDS = frozenset({"result", "error", "cancelled"})

# Rough share of the whole job each phase takes, for one overall progress bar.
PHASE_WEIGHTS = {
    Phase.LOADING_MODEL: 0.05,
    Phase.DOWNLOADING: 0.05,
    Phase.PREPROCESSING: 0.02,
    Phase.CONDITIONING: 0.02,
    Phase.SAMPLING: 0.70,
    Phase.DECODING: 0.15,
    Phase.PROCESSING: 0.04,
    Phase.EXPORTING: 0.02,
}
PHASE_ORDER = list(PHASE_WEIGHTS)


@dataclass(frozen=True)
class ProgressUpdate:
    """A progress report with an overall fraction and an ETA estimate for the phase."""

    phase: str
    step: int
    total: int
    fraction: float
    eta_seconds: Optional[float]

    def label(self) -> str:
        text = self.phase.capitalize()
        if self.total > 1:
            text += f" {self.step}/{self.total}"
        if self.eta_seconds is not None and self.eta_seconds >= 1:
            text += f" (~{format_duration(self.eta_seconds)} left)"
        return text


@dataclass(frozen=True)
class JobMessage:
    kind: str
    payload: Any = None


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def overall_fraction(phase: str, step: int, total: int) -> float:
    """Map a phase's own progress onto one 0..1 bar over the whole job."""
    if phase not in PHASE_WEIGHTS:
        return 0.0
    done = sum(PHASE_WEIGHTS[name] for name in PHASE_ORDER[: PHASE_ORDER.index(phase)])
    within = (step / total) if total > 0 else 0.0
    whole = sum(PHASE_WEIGHTS.values())
    return min(1.0, (done + PHASE_WEIGHTS[phase] * max(0.0, min(1.0, within))) / whole)


class ProgressClock:
    """Turns ``(phase, step, total)`` reports into :class:`ProgressUpdate` with a phase ETA.

    The ETA extrapolates the phase's own pace since its first report; a worker
    thread here and the GPU server's job records both use it, so the panel, the
    CLI and a remote client see the same numbers.
    """

    def __init__(self) -> None:
        self.phase = ""
        self.started = 0.0
        self.first_step = 0

    def update(self, phase: str, step: int, total: int) -> ProgressUpdate:
        now = time.monotonic()
        if phase != self.phase:
            self.phase, self.started, self.first_step = phase, now, step
        eta = None
        steps_done = step - self.first_step
        if total > 0 and steps_done > 0:
            eta = (now - self.started) / steps_done * (total - step)
        return ProgressUpdate(phase, step, total, overall_fraction(phase, step, total), eta)


@dataclass
class Job:
    """Runs ``work`` on a daemon thread; see the module docstring for the protocol."""

    work: Work
    name: str = "img3d-job"
    cancel_event: threading.Event = field(default_factory=threading.Event)
    messages: "queue.Queue[JobMessage]" = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._clock = ProgressClock()
        self.finished = False
        self.last_progress: Optional[ProgressUpdate] = None

    # --- worker side -------------------------------------------------------
    def _progress(self, phase: str, step: int, total: int) -> None:
        self.messages.put(JobMessage("progress", self._clock.update(phase, step, total)))

    def _run(self) -> None:
        try:
            result = self.work(self._progress, self.cancel_event)
        except CancelledError as exc:
            self.messages.put(JobMessage("cancelled", exc))
        except Img3DError as exc:
            self.messages.put(JobMessage("error", exc))
        except Exception as exc:  # a bug, not user error: keep the traceback in the log
            log.exception("Generation failed unexpectedly")
            self.messages.put(JobMessage("error", Img3DError(f"Unexpected error: {exc!r}")))
        else:
            self.messages.put(JobMessage("result", result))

    # --- owner side --------------------------------------------------------
    def start(self) -> "Job":
        if self._thread is not None:
            raise RuntimeError("a Job can only be started once")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cancel(self) -> None:
        """Ask the worker to stop; it raises CancelledError at its next check."""
        self.cancel_event.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker; True when it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def poll(self, budget_seconds: float = 0.002) -> list[JobMessage]:
        """Drain queued messages for at most ``budget_seconds``.

        Progress updates are coalesced (only the newest is returned) since a UI
        shows one bar; final messages are always returned.
        """
        deadline = time.perf_counter() + budget_seconds
        drained: list[JobMessage] = []
        newest_progress: Optional[JobMessage] = None
        while time.perf_counter() < deadline:
            try:
                message = self.messages.get_nowait()
            except queue.Empty:
                break
            if message.kind == "progress":
                newest_progress = message
                self.last_progress = message.payload
            else:
                drained.append(message)
                if message.kind in FINAL_KINDS:
                    self.finished = True
                    break
        if newest_progress is not None:
            drained.insert(0, newest_progress)
        return drained

    def run_to_end(
        self, poll_interval: float = 0.05, timeout: Optional[float] = None
    ) -> JobMessage:
        """Block until the final message (for scripts and tests); returns it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for message in self.poll(budget_seconds=0.01):
                if message.kind in FINAL_KINDS:
                    self.join()
                    return message
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not finish within {timeout} s")
            time.sleep(poll_interval)
