"""Import the engine ahead of the first Generate, in a background thread.

A cold start is mostly imports, not weights: torch, diffusers' model classes
and transformers' CLIP take about 9 s on a 2-core machine before the first
weight is read (``benchmarks`` measures it: the ``cold`` case). Blender's
panel starts :func:`warm_in_background` the first time it is drawn, so by the
time the artist has chosen a picture the first click goes straight to loading
weights and sampling. The thread only imports (no bpy, no model, no device);
Python's per-module import locks make a Generate that starts meanwhile wait
for the module being imported rather than import it twice.

A failure is logged and kept, never raised: the Generate that follows imports
the same modules and reports the problem with its typed error.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

logger = logging.getLogger(__name__)

IDLE = "idle"
RUNNING = "running"
DONE = "done"
FAILED = "failed"


def import_engine() -> None:
    """What the first generation imports before its first step: the model classes, our engine."""
    from . import decoding, loading, sampling  # noqa: F401 - imported for their side effect

    classes = loading.model_classes()
    # diffusers imports the modules of a scheduler's "compatible" schedulers the
    # first time it reads a scheduler config; a default config does that here.
    classes.HeunDiscreteScheduler.from_config({})


class ImportWarmup:
    """One background import per process; ``start`` is cheap to call on every redraw."""

    def __init__(self, target: Callable[[], None] = import_engine) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self.state = IDLE
        self.seconds: Optional[float] = None
        self.error: Optional[str] = None

    def start(self) -> bool:
        """Start the import unless it already ran or is running; True when this call started it."""
        if self._thread is not None:  # the redraw path: no lock once started
            return False
        with self._lock:
            if self._thread is not None:
                return False
            self.state = RUNNING
            self._thread = threading.Thread(
                target=self._run, name="img3d-warm-imports", daemon=True
            )
            self._thread.start()
            return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the import has finished (or ``timeout`` passed); True when finished."""
        thread = self._thread
        if thread is None:
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        started = time.perf_counter()
        state = FAILED  # also if the target raises something that is not an Exception
        try:
            self._target()
            state = DONE
        except Exception as error:  # noqa: BLE001 - reported by the Generate that follows
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.seconds = time.perf_counter() - started
            self.state = state
        if state == DONE:
            logger.info("Engine imported in the background in %.1f s", self.seconds)
        else:
            logger.info("Importing the engine in the background failed: %s", self.error)


_PROCESS_WARMUP = ImportWarmup()


def warm_in_background() -> ImportWarmup:
    """Start (once per process) importing the engine in a daemon thread; returns its state."""
    _PROCESS_WARMUP.start()
    return _PROCESS_WARMUP
