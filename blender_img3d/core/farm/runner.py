"""The batch driver: plan, skip what is done, feed an engine, record completion, summarise.

``run_batch`` is what ``python -m blender_img3d batch`` calls. It reads and
checks the whole manifest before any work, refuses to overwrite items finished
with other settings (unless ``force``), takes a lock on the output folder, and
then hands groups of items to an engine: :class:`LocalEngine` (this process,
the model loaded once) or :class:`~.ray_engine.RayEngine`. Each outcome that
comes back is recorded here, in the driver, exactly once: a success by writing
the item's ``report.json`` (atomically; it is the completion record), a failure
in the summary. ``DIR/batch.json`` is rewritten atomically as the batch goes
and at the end, whatever the end: complete, stopped by ``max_failures``, or
cancelled (Ctrl-C), which leaves every finished item intact.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

from .. import settings as defaults
from ..errors import CancelledError, ConfigError
from ..exporters.atomic import atomic_write
from ..progress import ProgressCallback, report
from ..version import __version__
from .manifest import read_manifest
from .plan import DONE, LOCK_FILE, STALE, SUMMARY_FILE, Item, item_state, plan_items
from .worker import Outcome, default_group_rows, execute_group, group_items

log = logging.getLogger(__name__)

# The progress callback's phase for the whole batch: step = items finished.
PHASE = "items"
# How often batch.json is rewritten while the batch runs (it is also written at the end).
SUMMARY_INTERVAL_S = 10.0

COMPLETE, FAILURES, STOPPED, CANCELLED = "complete", "failures", "stopped", "cancelled"


class Engine(Protocol):
    """Runs groups of items somewhere and yields their outcomes as they finish."""

    name: str
    workers: int

    def group_rows(self, device: str) -> int:
        """Rows a grouped prior call may hold on this engine's workers."""
        ...

    def run(self, groups: list[list[Item]], cancel: Optional[threading.Event]) -> Iterator[Outcome]:
        """Yield one outcome per item; raise ``CancelledError`` once ``cancel`` is set."""
        ...

    def close(self) -> None:
        """Free the workers (and the models they keep warm)."""
        ...


class LocalEngine:
    """This process, one group at a time; the pipeline's model cache keeps the model warm."""

    name = "local"
    workers = 1

    def group_rows(self, device: str) -> int:
        return default_group_rows(device)

    def run(self, groups: list[list[Item]], cancel: Optional[threading.Event]) -> Iterator[Outcome]:
        for group in groups:
            yield from execute_group(group, cancel)

    def close(self) -> None:
        pass  # the model stays cached for the rest of this process, like generate's


@dataclass
class BatchSummary:
    """What ``batch.json`` holds; ``status`` is complete, failures, stopped or cancelled."""

    manifest: str
    out_dir: str
    engine: str
    workers: int
    total: int
    started: str
    status: str = COMPLETE
    finished: str = ""
    made: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    work_seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.made + self.skipped

    @property
    def not_run(self) -> int:
        return self.total - self.done - len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        per_hour = self.made / self.seconds * 3600.0 if self.seconds > 0 and self.made else 0.0
        return {
            "generator": "blender_img3d",
            "version": __version__,
            "manifest": self.manifest,
            "out_dir": self.out_dir,
            "engine": self.engine,
            "workers": self.workers,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "counts": {
                "items": self.total,
                "done": self.done,
                "made": self.made,
                "skipped": self.skipped,
                "failed": len(self.failures),
                "not_run": self.not_run,
            },
            "failures": self.failures,
            "throughput": {
                "seconds": round(self.seconds, 3),
                "work_seconds": round(self.work_seconds, 3),
                "items_per_hour": round(per_hour, 2),
                "seconds_per_item": round(self.seconds / self.made, 3) if self.made else None,
            },
            "items": self.items,
        }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_batch(
    manifest: Path,
    out_dir: Path,
    base: defaults.Request,
    formats: list[str],
    *,
    engine: Optional[Engine] = None,
    force: bool = False,
    max_failures: Optional[int] = None,
    group_rows: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    on_outcome: Optional[Callable[[Outcome], None]] = None,
) -> BatchSummary:
    """Make every item of ``manifest`` under ``out_dir``; return (and write) the summary.

    ``base`` holds the batch's settings (the command line's); manifest rows
    override them per item. ``formats`` are exporter names (``glb``, ``step``...).
    ``progress`` gets ``(PHASE, finished, to_make)`` over the items this run makes
    (finished ones are skipped up front, so the ETA is about the rest). ``group_rows`` caps the rows
    of one grouped prior call (default: what the engine's device allows; 1
    turns grouping off). ``on_outcome`` sees every outcome after it is recorded.
    Raises :class:`~.manifest.ManifestError` / :class:`ConfigError` before any
    work; a cancelled batch raises :class:`CancelledError` after writing the summary.
    """
    manifest = Path(manifest).expanduser()
    if not formats:
        raise ConfigError("Give at least one output format (--format glb, obj, dxf or step).")
    unknown = [fmt for fmt in formats if fmt not in defaults.EXPORT_FORMATS]
    if unknown:
        raise ConfigError(
            f"Unknown format {', '.join(unknown)}: use {', '.join(defaults.EXPORT_FORMATS)}."
        )
    if max_failures is not None and max_failures < 1:
        raise ConfigError(f"--max-failures must be 1 or more, got {max_failures}.")
    if group_rows is not None and not 1 <= group_rows <= defaults.MAX_BATCH:
        raise ConfigError(f"--group must be between 1 and {defaults.MAX_BATCH}, got {group_rows}.")
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} is a file: give a folder.")
    items = plan_items(read_manifest(manifest), base, out_dir, list(formats), manifest)

    out_dir.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out_dir):
        states = {item.name: item_state(item) for item in items}
        stale = [name for name, state in states.items() if state == STALE]
        if stale and not force:
            shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
            raise ConfigError(
                f"{len(stale)} item(s) in {out_dir} were finished with other settings ({shown}): "
                "pass --force to redo them, or choose another --out-dir."
            )
        engine = engine or LocalEngine()
        summary = BatchSummary(
            manifest=str(manifest),
            out_dir=str(out_dir),
            engine=engine.name,
            workers=engine.workers,
            total=len(items),
            started=_now(),
        )
        todo = []
        for item in items:
            if states[item.name] == DONE and not force:
                summary.skipped += 1
                summary.items[item.name] = {"status": "skipped", "where": item.where}
            else:
                todo.append(item)
        _drive(
            engine, todo, summary, out_dir, group_rows, max_failures, progress, cancel, on_outcome
        )
    return summary


def _drive(
    engine: Engine,
    todo: list[Item],
    summary: BatchSummary,
    out_dir: Path,
    group_rows: Optional[int],
    max_failures: Optional[int],
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
    on_outcome: Optional[Callable[[Outcome], None]],
) -> None:
    by_name = {item.name: item for item in todo}
    start = time.monotonic()
    last_write = start
    report(progress, PHASE, 0, len(todo))
    stop = threading.Event()  # set on max_failures; the engine sees it as a cancel
    watch = _either(cancel, stop)
    try:
        if todo:
            device = todo[0].request.generation.device
            rows = group_rows or engine.group_rows(device)
            groups = group_items(todo, rows)
            log.info(
                "%d items to make in %d groups (%d rows at most)", len(todo), len(groups), rows
            )
            for outcome in engine.run(groups, watch):
                item = by_name.pop(outcome.name, None)
                if item is None:  # a retried item already recorded: never record twice
                    log.warning("Ignoring a second outcome for %s.", outcome.name)
                    continue
                _record(item, outcome, summary)
                summary.work_seconds += outcome.seconds
                summary.seconds = time.monotonic() - start
                report(progress, PHASE, len(todo) - len(by_name), len(todo))
                if on_outcome is not None:
                    on_outcome(outcome)
                if max_failures is not None and len(summary.failures) >= max_failures:
                    summary.status = STOPPED
                    stop.set()
                    break
                if time.monotonic() - last_write > SUMMARY_INTERVAL_S:
                    _write_summary(out_dir, summary)
                    last_write = time.monotonic()
    except CancelledError:
        if not stop.is_set():
            summary.status = CANCELLED
            raise
    finally:
        engine.close()
        summary.seconds = time.monotonic() - start
        if summary.status == COMPLETE and summary.failures:
            summary.status = FAILURES
        summary.finished = _now()
        with contextlib.suppress(Exception):  # never hide the real error behind this one
            _write_summary(out_dir, summary)


def _record(item: Item, outcome: Outcome, summary: BatchSummary) -> None:
    entry: dict[str, Any] = {
        "where": item.where,
        "seconds": round(outcome.seconds, 3),
        "worker": outcome.worker,
    }
    if outcome.ok:
        document = dict(outcome.report or {})
        warning = (document.get("input") or {}).get("warning")
        if warning:  # the background was kept, or the cut is doubtful: the CLI says so
            entry["note"] = warning
        document["farm"] = {
            "item": item.name,
            "where": item.where,
            "settings_hash": item.settings_hash,
            "files": outcome.files,
            "worker": outcome.worker,
            "seconds": round(outcome.seconds, 3),
            "finished": _now(),
        }
        try:
            _write_json(item.report_path, document)
        except Exception as error:  # noqa: BLE001 - a report we can't write is that item's failure
            outcome = Outcome(
                item.name, ok=False, error_type=type(error).__name__, message=str(error)
            )
        else:
            summary.made += 1
            summary.items[item.name] = {"status": "made", **entry}
            return
    summary.failures.append(
        {
            "name": item.name,
            "where": item.where,
            "error": outcome.error_type,
            "message": outcome.message,
        }
    )
    summary.items[item.name] = {"status": "failed", **entry}
    log.warning("%s (%s) failed: %s", item.name, item.where, outcome.message)


def _write_summary(out_dir: Path, summary: BatchSummary) -> None:
    _write_json(out_dir / SUMMARY_FILE, summary.to_dict())


def _write_json(path: Path, document: dict[str, Any]) -> None:
    from ..pipeline import _json_default  # the pipeline's report encoding, for the same values

    text = json.dumps(document, indent=2, default=_json_default) + "\n"
    with atomic_write(path, "w") as stream:
        stream.write(text)


class _either:
    """A cancel flag that is set when either of two events is (``is_set`` is all the
    pipeline asks of it)."""

    def __init__(self, first: Optional[threading.Event], second: threading.Event) -> None:
        self._events = [event for event in (first, second) if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)

    def set(self) -> None:
        self._events[-1].set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder (two would both redo the same unfinished items)."""
    path = out_dir / LOCK_FILE
    if os.name != "posix":
        yield
        return
    import fcntl

    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"Another batch is writing into {out_dir}: wait for it, "
                "or choose another --out-dir."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
