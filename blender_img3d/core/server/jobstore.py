"""Job records, the bounded queue and the GPU workers behind the HTTP routes.

One worker thread per GPU (or one for the CPU / Apple GPU) loads the models
once, keeps them warm, and runs jobs through ``core.backend.get_backend("local")``
like every other entry point. Jobs wait in one queue of at most ``max_queue``;
a full queue refuses new jobs (HTTP 429) instead of piling up memory.

A job lives in its own folder under the jobs folder: the upload, the
pipeline's files and finally one result archive. A finished, failed or
cancelled job is kept for ``keep_results_seconds`` and then deleted, record
and folder, by a sweeper thread.

Client artwork is treated as private: job folders are 0700 and archives
0600; an upload is deleted the moment its job ends, in any state; at
shutdown every job folder goes (records live in memory, so a later run could
never serve them), and at start-up the folders a killed run left behind are
swept. One server per jobs folder, held by a lock file, so a sweep never
touches a live server's jobs. The result's ``report.json`` names files, not
the server's paths.

Admission: :meth:`JobStore.new_job` takes a place in the queue before the
body is even read (HTTP 429 when there is none), so uploads never pile up
behind a full queue; the place is returned if the job is discarded.

Progress reaches HTTP listeners as status snapshots appended to the record;
the server-sent-event route registers a wake-up callback and is woken from the
worker thread (``loop.call_soon_threadsafe``), so no thread blocks on a socket.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import CancelledError, ConfigError, Img3DError
from ..jobs import ProgressClock
from ..settings import DEFAULT_QUERY_BATCH, MAX_PIXELS, Request
from . import protocol
from .config import ServerConfig

log = logging.getLogger(__name__)

LOCK_NAME = ".img3d-server.lock"
MAX_EVENTS_PER_JOB = 4096  # older progress snapshots are dropped; listeners get the newest


class QueueFullError(Img3DError):
    """The queue holds ``max_queue`` jobs already (HTTP 429)."""


class ResultNotReadyError(Img3DError):
    """The job has no result (yet, or ever: it failed or was cancelled) (HTTP 409)."""


@dataclass(eq=False)
class JobRecord:
    """One job as the routes see it; fields change only under the store's lock."""

    id: str
    folder: Path
    owner: str = ""  # the client (auth) whose token made the job; "" without tokens
    request: Optional[Request] = None
    options: dict[str, Any] = field(default_factory=dict)
    state: str = protocol.QUEUED
    phase: str = ""
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta: Optional[float] = None
    error: Optional[str] = None
    error_type: Optional[str] = None
    created: float = field(default_factory=time.time)
    ended: Optional[float] = None
    archive: Optional[Path] = None
    cancel: threading.Event = field(default_factory=threading.Event)
    events: list[dict[str, Any]] = field(default_factory=list)
    first_event: int = 0  # sequence number of events[0]
    listeners: set[Callable[[], None]] = field(default_factory=set)
    clock: ProgressClock = field(default_factory=ProgressClock)
    reserved: bool = False  # holds a queue place taken by new_job, not yet queued

    @property
    def final(self) -> bool:
        return self.state in protocol.FINAL_STATES

    @property
    def next_event(self) -> int:
        return self.first_event + len(self.events)


@dataclass
class Worker:
    """A thread bound to one device, with what its warm-up loaded."""

    device: str
    thread: Optional[threading.Thread] = None
    job: Optional[JobRecord] = None
    models: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)


def worker_devices(device: str) -> list[str]:
    """One device name per worker: every visible GPU for CUDA, else the one device."""
    from ..shap_e.loading import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if resolved.index is not None:
            return [f"cuda:{resolved.index}"]
        import torch

        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return [resolved.type]


class JobStore:
    """The queue, the workers and the records; thread-safe, driven by the HTTP routes."""

    def __init__(
        self,
        config: ServerConfig,
        devices: Optional[list[str]] = None,
        backend_factory: Optional[Callable[[], Any]] = None,
    ) -> None:
        self.config = config
        self._devices = devices
        self._backend_factory = backend_factory
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[JobRecord] = deque()
        self._records: dict[str, JobRecord] = {}
        self._reserved = 0  # queue places held by uploads still arriving
        self._stopping = False
        self._lock_file: Optional[Any] = None
        self._owns_jobs_dir = config.jobs_dir is None
        self.jobs_dir = Path(config.jobs_dir) if config.jobs_dir else None
        self.workers: list[Worker] = []
        self._sweeper: Optional[threading.Thread] = None

    # --- life cycle --------------------------------------------------------------
    def start(self) -> "JobStore":
        if self.jobs_dir is None:
            self.jobs_dir = Path(tempfile.mkdtemp(prefix="img3d-jobs-"))  # 0700
        else:
            self.jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_file = lock_jobs_dir(self.jobs_dir)
        swept = remove_job_folders(self.jobs_dir)
        if swept:
            log.info("removed %d job folder(s) a previous run left in %s", swept, self.jobs_dir)
        devices = self._devices or worker_devices(self.config.device)
        for index, device in enumerate(devices):
            worker = Worker(device)
            worker.thread = threading.Thread(
                target=self._work, args=(worker,), name=f"img3d-worker-{index}", daemon=True
            )
            self.workers.append(worker)
            worker.thread.start()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="img3d-sweeper", daemon=True)
        self._sweeper.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel everything, let the workers finish their step, delete a temporary jobs folder."""
        with self._lock:
            self._stopping = True
            for record in list(self._queue):
                self._end(record, protocol.CANCELLED, "The server is shutting down.")
            self._queue.clear()
            for worker in self.workers:
                if worker.job is not None:
                    worker.job.cancel.set()
            self._wake.notify_all()
        for worker in self.workers:
            if worker.thread is not None:
                worker.thread.join(timeout)
        if self._sweeper is not None:
            self._sweeper.join(timeout)
        if self._owns_jobs_dir and self.jobs_dir is not None:
            shutil.rmtree(self.jobs_dir, ignore_errors=True)
        elif self.jobs_dir is not None:
            remove_job_folders(self.jobs_dir)  # no later run could serve them
        with self._lock:
            self._records.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Block until every worker has finished warming up (tests, ``serve`` start-up)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self.workers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not worker.ready.wait(left):
                return False
        return True

    # --- routes' side --------------------------------------------------------------
    def new_job(self, owner: str = "") -> JobRecord:
        """A record with its folder and a place in the queue; QueueFullError when none is left.

        The upload streams into the folder afterwards; ``enqueue`` or ``discard``
        gives the place back.
        """
        assert self.jobs_dir is not None, "start() the store first"
        with self._lock:
            self._check_room(len(self._queue) + self._reserved)
            self._reserved += 1
        job_id = secrets.token_hex(16)
        folder = self.jobs_dir / job_id
        try:
            folder.mkdir(mode=0o700)
        except BaseException:
            with self._lock:
                self._reserved -= 1
            raise
        return JobRecord(id=job_id, folder=folder, owner=owner, reserved=True)

    def discard(self, record: JobRecord) -> None:
        """Forget a record that was never queued (bad input, full queue)."""
        with self._lock:
            self._release(record)
        shutil.rmtree(record.folder, ignore_errors=True)

    def prepare(self, record: JobRecord, request: Request, options: dict[str, Any]) -> None:
        """Put the server's own settings and the job folder's paths into ``request``; validate.

        Runs before the job is queued, so a bad value is refused and nothing is queued.
        """
        config = self.config
        gen = request.generation
        gen.model = config.image_model if request.mode == "image" else config.text_model
        gen.revision = config.revision
        gen.cache_dir = config.cache_dir
        gen.allow_download = config.allow_download
        gen.device = self.workers[0].device if self.workers else "cpu"
        gen.dtype = config.dtype
        gen.query_batch = DEFAULT_QUERY_BATCH
        limits = request.image_settings  # a client may lower the server's limits, not raise them
        limits.max_file_bytes = min(limits.max_file_bytes, config.max_upload_bytes)
        limits.max_pixels = min(limits.max_pixels, MAX_PIXELS)
        # Validated with the client's own names first, so no message shows a server path.
        request.outputs = [Path(name) for name in options["outputs"]]
        request.validate()
        if options["save_input"] and not request.preprocess:
            raise ConfigError("save_input needs preprocessing; drop preprocess: false.")
        out = record.folder / "out"
        # One folder per distinct output name: whatever a writer puts beside its file
        # (OBJ's .mtl) is then that output's companion, without knowing the formats.
        unique = list(dict.fromkeys(options["outputs"]))
        if not any(name.lower().endswith(".glb") for name in unique):
            unique.append(f"{Path(unique[0]).stem if unique else 'result'}.glb")
        request.outputs = [out / str(index) / name for index, name in enumerate(unique)]
        for path in request.outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
        options["unique_outputs"] = unique
        request.latents_out = out / protocol.ARCHIVE_LATENTS
        request.report_path = out / protocol.ARCHIVE_REPORT
        request.save_input = out / protocol.ARCHIVE_INPUT if options["save_input"] else None
        record.request, record.options = request, options

    def enqueue(self, record: JobRecord) -> int:
        """Queue a prepared record; its position (0: next). Raises QueueFullError."""
        with self._lock:
            self._release(record)
            self._check_room(len(self._queue))
            self._queue.append(record)
            self._records[record.id] = record
            position = len(self._queue) - 1
            self._publish(record)
            self._wake.notify_all()  # the sweeper waits on the same condition
            return position

    def get(self, job_id: str) -> Optional[JobRecord]:
        if not protocol.JOB_ID_PATTERN.match(job_id):
            return None
        with self._lock:
            return self._records.get(job_id)

    def cancel(self, record: JobRecord) -> None:
        """Cancel: a queued job ends now, a running one at its next sampling step."""
        with self._lock:
            if record.final:
                return
            record.cancel.set()
            if record.state == protocol.QUEUED:
                self._queue.remove(record)
                self._end(record, protocol.CANCELLED, None)
                self._publish_positions()

    def status(self, record: JobRecord) -> dict[str, Any]:
        with self._lock:
            return self._snapshot(record)

    def events_since(self, record: JobRecord, seq: int) -> tuple[list[dict[str, Any]], int]:
        """Snapshots numbered ``seq`` and later (the oldest kept if ``seq`` was dropped)."""
        with self._lock:
            start = max(seq - record.first_event, 0)
            return list(record.events[start:]), record.next_event

    def listen(self, record: JobRecord, wake: Callable[[], None]) -> None:
        with self._lock:
            record.listeners.add(wake)

    def unlisten(self, record: JobRecord, wake: Callable[[], None]) -> None:
        with self._lock:
            record.listeners.discard(wake)

    def result_archive(self, record: JobRecord) -> Path:
        with self._lock:
            if record.state == protocol.FINISHED and record.archive is not None:
                return record.archive
            if record.state == protocol.FAILED:
                message = f"Job {record.id} failed, so it has no result: {record.error}"
            elif record.state == protocol.CANCELLED:
                message = f"Job {record.id} was cancelled, so it has no result."
            else:
                message = (
                    f"Job {record.id} is {record.state}: its result is ready when its "
                    f"state is '{protocol.FINISHED}'."
                )
            raise ResultNotReadyError(message)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queue": len(self._queue),
                "max_queue": self.config.max_queue,
                "running": sum(1 for w in self.workers if w.job is not None),
                "workers": [
                    {"device": w.device, "busy": w.job is not None, "ready": w.ready.is_set()}
                    for w in self.workers
                ],
                "models": [dict(m, device=w.device) for w in self.workers for m in w.models],
            }

    # --- bookkeeping (callers hold the lock) ----------------------------------------
    def _check_room(self, taken: int) -> None:
        if self._stopping:
            raise QueueFullError("The server is shutting down: try again later.")
        if taken >= self.config.max_queue:
            raise QueueFullError(
                f"The server's queue is full ({self.config.max_queue} jobs waiting): "
                "try again in a minute."
            )

    def _release(self, record: JobRecord) -> None:
        if record.reserved:
            record.reserved = False
            self._reserved -= 1

    def _snapshot(self, record: JobRecord) -> dict[str, Any]:
        position = None
        if record.state == protocol.QUEUED and record in self._queue:
            position = self._queue.index(record)
        return {
            "id": record.id,
            "state": record.state,
            "phase": record.phase,
            "step": record.step,
            "total": record.total,
            "fraction": round(record.fraction, 4),
            "eta": None if record.eta is None else round(record.eta, 2),
            "position": position,
            "error": record.error,
            "error_type": record.error_type,
        }

    def _publish(self, record: JobRecord) -> None:
        snapshot = self._snapshot(record)
        snapshot["seq"] = record.next_event
        record.events.append(snapshot)
        if len(record.events) > MAX_EVENTS_PER_JOB:
            dropped = len(record.events) - MAX_EVENTS_PER_JOB // 2
            del record.events[:dropped]
            record.first_event += dropped
        for wake in list(record.listeners):
            try:
                wake()
            except RuntimeError:  # the listener's event loop is gone
                record.listeners.discard(wake)

    def _publish_positions(self) -> None:
        for queued in self._queue:
            self._publish(queued)

    def _end(self, record: JobRecord, state: str, error: Optional[BaseException | str]) -> None:
        record.state = state
        record.ended = time.time()
        record.eta = None
        if error is not None:
            record.error = without_paths(str(error), record.folder)  # a writer's error names files
            record.error_type = type(error).__name__ if isinstance(error, Img3DError) else None
        self._publish(record)
        # An ended job is kept for a while: only its final state, not its history, its
        # request (an uploaded pixel array can be large) or its cancel flag's listeners.
        record.first_event += len(record.events) - 1
        del record.events[:-1]
        record.request = None
        shutil.rmtree(record.folder / "input", ignore_errors=True)  # the client's artwork

    # --- workers -------------------------------------------------------------------
    def _backend(self):
        if self._backend_factory is not None:
            return self._backend_factory()
        from ..backend import get_backend

        return get_backend("local", keep_model_loaded=True)

    def _warm_up(self, worker: Worker) -> None:
        from ..shap_e.loading import load_models

        config = self.config
        for mode in config.warm_modes:
            source = config.image_model if mode == "image" else config.text_model
            entry: dict[str, Any] = {"mode": mode, "source": source, "loaded": False}
            started = time.perf_counter()
            try:
                models = load_models(
                    source,
                    mode=mode,
                    revision=config.revision,
                    cache_dir=config.cache_dir,
                    allow_download=config.allow_download,
                    device=worker.device,
                    dtype=config.dtype,
                )
            except Img3DError as error:
                entry["error"] = str(error)
                log.warning("%s: %s jobs will fail: %s", worker.device, mode, error)
            else:
                entry.update(
                    loaded=True,
                    source=models.source,
                    revision=models.revision,
                    seconds=round(time.perf_counter() - started, 2),
                )
            worker.models.append(entry)

    def _work(self, worker: Worker) -> None:
        try:
            self._warm_up(worker)
        except Exception:  # a bug in warm-up must not kill the worker
            log.exception("Warm-up on %s failed", worker.device)
        finally:
            worker.ready.set()
        backend = self._backend()
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                record = self._queue.popleft()
                record.state = protocol.RUNNING
                worker.job = record
                self._publish(record)
                self._publish_positions()
            try:
                self._run(worker, backend, record)
            finally:
                with self._lock:
                    worker.job = None

    def _run(self, worker: Worker, backend: Any, record: JobRecord) -> None:
        request = record.request
        assert request is not None
        request.generation.device = worker.device

        def progress(phase: str, step: int, total: int) -> None:
            update = record.clock.update(phase, step, total)
            with self._lock:
                record.phase, record.step, record.total = phase, step, total
                record.fraction, record.eta = update.fraction, update.eta_seconds
                self._publish(record)

        outcome: tuple[str, Optional[BaseException]]
        try:
            result = backend.submit(request, progress=progress, cancel=record.cancel)
            archive = write_archive(record, result)
        except CancelledError as error:
            outcome = (protocol.CANCELLED, None if record.cancel.is_set() else error)
        except Img3DError as error:
            outcome = (protocol.FAILED, error)
        except Exception as error:  # a bug: keep the traceback in the server's log
            log.exception("Job %s failed unexpectedly", record.id)
            outcome = (protocol.FAILED, RuntimeError(f"Unexpected server error: {error!r}"))
        else:
            record.archive = archive
            outcome = (protocol.FINISHED, None)
        finally:
            for part in ("out", "input"):
                shutil.rmtree(record.folder / part, ignore_errors=True)
        with self._lock:
            if outcome[0] == protocol.FINISHED and record.cancel.is_set():
                # A cancel accepted while the archive was written is still final: the
                # job ends cancelled with nothing kept (cancel() and this hold the lock).
                record.archive = None
                archive.unlink(missing_ok=True)
                outcome = (protocol.CANCELLED, None)
            if outcome[0] == protocol.FINISHED:
                record.fraction = 1.0
            self._end(record, *outcome)
        log.info("job %s %s on %s", record.id, outcome[0], worker.device)

    # --- retention -----------------------------------------------------------------
    def sweep(self, now: Optional[float] = None) -> list[str]:
        """Delete ended jobs older than the retention time; their ids."""
        now = time.time() if now is None else now
        keep = self.config.keep_results_seconds
        with self._lock:
            expired = [
                r for r in self._records.values() if r.ended is not None and now - r.ended >= keep
            ]
            for record in expired:
                del self._records[record.id]
        for record in expired:
            shutil.rmtree(record.folder, ignore_errors=True)
        if expired:
            log.info("deleted %d expired job(s)", len(expired))
        return [record.id for record in expired]

    def _sweep_loop(self) -> None:
        interval = min(self.config.sweep_interval_seconds, self.config.keep_results_seconds)
        while True:
            with self._lock:
                if self._wake.wait_for(lambda: self._stopping, timeout=interval):
                    return
            try:
                self.sweep()
            except Exception:
                log.exception("Deleting old results failed")


def write_archive(record: JobRecord, result: Any) -> Path:
    """The result zip: result document + arrays, every file written, latents, report.

    ``files`` in the document maps each (variant, requested output) to its
    archive name; ``companions`` lists the files a writer put beside an output.
    """
    import numpy as np

    from ..exporters.atomic import atomic_write
    from ..pipeline import output_paths
    from ..serialize import split_payloads

    request, options = record.request, record.options
    assert request is not None
    document, table = split_payloads(result.to_dict())
    document["outputs"] = []  # the server's paths mean nothing to a client
    per_variant = output_paths(request.outputs, len(result.meshes))
    unique = options["unique_outputs"]
    out = record.folder / "out"
    files, companions = [], []
    for wanted, name in enumerate(options["outputs"]):
        index = unique.index(name)
        written = set()
        for variant, paths in enumerate(per_variant):
            written.add(paths[index].name)
            files.append(
                {"variant": variant, "output": wanted, "name": f"files/{index}/{paths[index].name}"}
            )
        for extra in sorted((out / str(index)).iterdir()):
            if extra.name not in written:
                companions.append({"output": wanted, "name": f"files/{index}/{extra.name}"})
    document["files"], document["companions"] = files, companions
    arrays = io.BytesIO()
    np.savez(
        arrays,
        **{
            (protocol.BYTES_PREFIX + key if isinstance(value, bytes) else key): (
                np.frombuffer(value, dtype=np.uint8) if isinstance(value, bytes) else value
            )
            for key, value in table.items()
        },
    )
    target = record.folder / "result.zip"
    report = Path(request.report_path) if request.report_path is not None else None
    if report is not None and report.is_file():
        report.write_text(json.dumps(without_paths(json.loads(report.read_text()), record.folder)))
    with atomic_write(target, "wb") as stream:
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr(protocol.ARCHIVE_DOCUMENT, json.dumps(document))
            zf.writestr(protocol.ARCHIVE_ARRAYS, arrays.getvalue())
            for index in range(len(unique)):
                for path in sorted((out / str(index)).iterdir()):
                    zf.write(path, f"files/{index}/{path.name}")
            for name, path in (
                (protocol.ARCHIVE_LATENTS, request.latents_out),
                (protocol.ARCHIVE_REPORT, request.report_path),
                (protocol.ARCHIVE_INPUT, request.save_input),
            ):
                if path is not None and Path(path).is_file():
                    zf.write(path, name)
    os.chmod(target, 0o600)  # the folder is 0700 already; the file is private on its own too
    return target


def without_paths(value: Any, folder: Path) -> Any:
    """``value`` (JSON) with every path inside ``folder`` cut to its file name."""
    pattern = re.compile(re.escape(str(folder)) + r"[^\s\"']*")
    if isinstance(value, str):
        return pattern.sub(lambda match: Path(match.group()).name, value)
    if isinstance(value, list):
        return [without_paths(item, folder) for item in value]
    if isinstance(value, dict):
        return {key: without_paths(item, folder) for key, item in value.items()}
    return value


def remove_job_folders(jobs_dir: Path) -> int:
    """Delete the job folders (32 hex digits, nothing else) in ``jobs_dir``; how many."""
    count = 0
    for entry in jobs_dir.iterdir():
        if protocol.JOB_ID_PATTERN.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            count += 1
    return count


def lock_jobs_dir(jobs_dir: Path) -> Optional[Any]:
    """An open lock file that keeps a second server out of ``jobs_dir``; None where unsupported."""
    try:
        import fcntl
    except ImportError:  # Windows: one server per folder is the user's to keep
        return None
    handle = open(jobs_dir / LOCK_NAME, "a")  # noqa: SIM115 - closed in JobStore.stop
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            f"Another server is using the jobs folder {jobs_dir}: give each server its own "
            "--jobs-dir."
        ) from None
    return handle
