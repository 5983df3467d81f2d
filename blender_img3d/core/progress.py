"""Progress reporting and cooperative cancellation shared by every long step.

A progress callback receives ``(phase, step, total)``; a cancel flag is a
``threading.Event``. Both are optional everywhere so library code can be called
plainly from tests and scripts.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import CancelledError

ProgressCallback = Callable[[str, int, int], None]


class Phase:
    """Names of the pipeline phases, as shown in the panel and the CLI."""

    QUEUED = "queued on the server"  # a remote job waiting for a free GPU
    LOADING_MODEL = "loading model"
    DOWNLOADING = "downloading"
    INSTALLING = "installing packages"
    PREPROCESSING = "preprocessing"
    CONDITIONING = "conditioning"
    SAMPLING = "sampling"
    DECODING = "decoding"
    PROCESSING = "processing"
    EXPORTING = "exporting"
    IMPORTING = "importing"


def report(progress: Optional[ProgressCallback], phase: str, step: int, total: int) -> None:
    """Call ``progress`` if one was given."""
    if progress is not None:
        progress(phase, step, total)


def raise_if_cancelled(cancel: Optional[threading.Event]) -> None:
    """Raise :class:`CancelledError` when the cancel flag is set."""
    if cancel is not None and cancel.is_set():
        raise CancelledError()
