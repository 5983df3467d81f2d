"""The worker side of a batch: groups of items through the pipeline, the model kept warm.

The same code runs in the driver's process (the local engine) and inside a
Ray actor. It writes an item's meshes and latents (each atomically, by name)
and returns an :class:`Outcome` per item; it never writes the item's report:
the driver does that once, which is what records completion.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import settings as defaults
from ..errors import CancelledError, Img3DError
from .plan import Item

log = logging.getLogger(__name__)

# Rows (variants) one grouped prior call may hold on a CPU: bigger groups gain
# little there (the matmuls already fill the cores) and only delay progress.
CPU_GROUP_ROWS = 4
# Working memory one row of a grouped prior call may need on a GPU, for the
# full-size prior with guidance (2 x 1024 tokens x 4096-wide MLP activations in
# float32, about 16 live buffers): a deliberate overestimate.
GPU_BYTES_PER_ROW = 512 * 1024**2


@dataclass
class Outcome:
    """What became of one item: its report (success) or its error (failure)."""

    name: str
    ok: bool
    report: Optional[dict[str, Any]] = None  # Result.report_dict(), plain data
    files: dict[str, int] = field(default_factory=dict)  # path in the item folder -> bytes
    error_type: str = ""
    message: str = ""
    seconds: float = 0.0
    worker: str = ""


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def default_group_rows(device: str = "auto") -> int:
    """How many rows a grouped prior call may hold here (1 turns grouping off)."""
    from ..shap_e.loading import resolve_device

    resolved = resolve_device(device)
    if getattr(resolved, "type", "cpu") != "cuda":
        return CPU_GROUP_ROWS
    import torch

    free, _total = torch.cuda.mem_get_info(resolved)
    return max(1, min(defaults.MAX_BATCH, free // GPU_BYTES_PER_ROW))


def group_items(items: list[Item], max_rows: int) -> list[list[Item]]:
    """Items in groups that can share prior calls: same sampling key, at most ``max_rows``
    variants each; manifest order is kept within a key."""
    from ..pipeline import sampling_key

    open_groups: dict[tuple, list[Item]] = {}
    groups: list[list[Item]] = []
    for item in items:
        key = sampling_key(item.request)
        rows = item.request.generation.batch
        group = open_groups.get(key)
        if group is not None and sum(i.request.generation.batch for i in group) + rows > max_rows:
            group = None
        if group is None:
            group = []
            groups.append(group)
            open_groups[key] = group
        group.append(item)
    return groups


def prepare_folder(folder: Path) -> None:
    """Create the item's folder and drop temporary files a killed writer left behind."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def execute_group(items: list[Item], cancel: Optional[threading.Event] = None) -> list[Outcome]:
    """Run ``items`` (one group) and return an outcome per item, in order.

    A group of several shares its prior calls (``pipeline.run_group``); if the
    group as a whole fails (out of memory, say), its items are retried one by one
    so that a single bad item can't take the others down. Cancellation raises
    :class:`CancelledError`.
    """
    for item in items:
        prepare_folder(item.folder)
    if len(items) == 1:
        return [_execute_single(items[0], cancel)]
    from .. import pipeline

    start = time.perf_counter()
    try:
        results = pipeline.run_group([item.request for item in items], cancel=cancel)
    except CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - any group failure falls back to single runs
        log.warning("A group of %d items failed (%s); running them one by one.", len(items), error)
        return [_execute_single(item, cancel) for item in items]
    rows = sum(item.request.generation.batch for item in items)
    seconds = time.perf_counter() - start
    return [
        _outcome(item, result, seconds * item.request.generation.batch / rows)
        for item, result in zip(items, results)
    ]


def _execute_single(item: Item, cancel: Optional[threading.Event]) -> Outcome:
    from ..backend import get_backend

    start = time.perf_counter()
    try:
        result: Any = get_backend("local").submit(item.request, cancel=cancel)
    except CancelledError:
        raise
    except Img3DError as error:
        result = error
    except Exception as error:  # noqa: BLE001 - one item's bug must not end a night's batch
        log.exception("Item %s failed unexpectedly", item.name)
        result = error
    return _outcome(item, result, time.perf_counter() - start)


def _outcome(item: Item, result: Any, seconds: float) -> Outcome:
    if isinstance(result, BaseException):
        message = str(result) or type(result).__name__
        if not isinstance(result, Img3DError):
            message = f"internal error ({type(result).__name__}): {message}"
        return Outcome(
            item.name,
            ok=False,
            error_type=type(result).__name__,
            message=message,
            seconds=seconds,
            worker=worker_label(),
        )
    return Outcome(
        item.name,
        ok=True,
        report=result.report_dict(),
        files=_written_files(item, result),
        seconds=seconds,
        worker=worker_label(),
    )


def _written_files(item: Item, result: Any) -> dict[str, int]:
    """The files this run wrote (meshes, latents and their sidecar) with their sizes, by name
    inside the item's folder: the resume check compares them."""
    from ..shap_e.latents import sidecar_path

    paths = [Path(path) for path in result.outputs]
    if item.request.latents_out is not None:
        paths += [Path(item.request.latents_out), sidecar_path(item.request.latents_out)]
    return {path.name: path.stat().st_size for path in paths}
