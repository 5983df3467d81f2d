"""All-or-nothing file writes: a reader sees the old file or the complete new one, never half.

Data goes to a hidden temporary file in the target's own folder (so the final
``os.replace`` is a same-filesystem rename, which POSIX and Windows make atomic),
is flushed and fsynced, and only then renamed over the target. Any failure on
the way removes the temporary file, leaves the previous file untouched and is
raised as :class:`ExportError` with the operating system's reason.

:func:`staged_writes` widens this to a set of files (every output of a run):
their renames wait until the whole set is complete, so a cancel or a failure
half-way leaves each target as it was. Every temporary file alive is also
registered, so a signal handler that must exit at once can still delete them.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator, Optional, Union

from ..errors import CancelledError, ExportError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# Characters of the target's name kept in its temporary file's name (".<name>.XXXXXXXX.tmp").
_TEMP_NAME_CHARS = 48
_live: set[Path] = set()  # temporary files written or staged now, for remove_temporary_files
_live_lock = threading.Lock()
_batch: contextvars.ContextVar[Optional["WriteBatch"]] = contextvars.ContextVar(
    "img3d_write_batch", default=None
)

_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or choose another folder",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.ENOENT: "the folder does not exist; create it first or fix the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EISDIR: "the path is a folder; give a file name",
    errno.ENAMETOOLONG: "the file name is too long; choose a shorter one",
}


def describe_os_error(error: OSError) -> str:
    """The OS reason plus what the user can do about it."""
    reason = error.strerror or str(error)
    hint = _HINTS.get(error.errno or -1)
    return f"{reason} ({hint})" if hint else reason


def check_target(path: PathLike) -> Path:
    """Return ``path`` as an absolute :class:`Path` or raise :class:`ExportError` if unusable.

    Checked up front so the user hears "is a folder" rather than a rename error.
    """
    target = Path(os.fspath(path)).expanduser()
    if not target.name or target.name in (".", ".."):
        raise ExportError(f"Can't write {str(path)!r}: give a file name, not a folder.")
    if target.is_dir():
        raise ExportError(f"Can't write {target}: it is a folder; give a file name.")
    parent = target.parent
    if not parent.exists():
        raise ExportError(f"Can't write {target}: the folder {parent} does not exist.")
    if not parent.is_dir():
        raise ExportError(f"Can't write {target}: {parent} is a file, not a folder.")
    return target.absolute()


@contextlib.contextmanager
def atomic_write(
    path: PathLike,
    mode: str = "wb",
    *,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    newline: Optional[str] = None,
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on clean exit fsync it and rename it to ``path``.

    ``mode`` is ``"wb"`` or ``"w"`` (text; ``encoding``/``errors``/``newline`` as for
    :func:`open`). An exception inside the block discards the temporary file and is
    re-raised unchanged, except :class:`OSError`, which becomes :class:`ExportError`.
    Inside :func:`staged_writes` the complete temporary file is handed to the batch
    instead of being renamed, so the rename happens with the batch's others.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write writes new files only (mode 'w' or 'wb'), got {mode!r}")
    target = check_target(path)
    try:
        # The target's name is cut in the temporary name: a long but legal name must
        # not become an illegal (ENAMETOOLONG) temporary one.
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name[:_TEMP_NAME_CHARS]}.", suffix=".tmp", dir=target.parent
        )
    except OSError as error:
        raise ExportError(f"Can't write {target}: {describe_os_error(error)}.") from error
    tmp = Path(tmp_name)
    _track(tmp)
    handed_over = False
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding or "utf-8", "errors": errors}
        if "b" not in mode:
            kwargs["newline"] = newline
        with open(fd, mode, **kwargs) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        _keep_permissions(target, tmp)
        batch = _batch.get()
        if batch is not None:
            batch._stage(tmp, target)
        else:
            os.replace(tmp, target)
            _untrack(tmp)
            _fsync_folder(target.parent)
        handed_over = True
    except OSError as error:
        raise ExportError(f"Can't write {target}: {describe_os_error(error)}.") from error
    finally:
        if not handed_over:
            _discard(tmp)
    log.debug("wrote %s", target)


class WriteBatch:
    """Complete temporary files waiting to be renamed over their targets together.

    Made by :func:`staged_writes`; every :func:`atomic_write` inside it stages here.
    ``keep_staged()`` marks what is staged so far as worth keeping even if the run
    fails later (not if it is cancelled): the pipeline does so for saved latents,
    which let ``decode`` retry without sampling again.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._kept = 0
        self.committed: list[Path] = []

    @property
    def targets(self) -> list[Path]:
        """The files this batch will write, in the order they were staged."""
        return [target for _, target in self._staged]

    def keep_staged(self) -> None:
        self._kept = len(self._staged)

    def _stage(self, tmp: Path, target: Path) -> None:
        self._staged.append((tmp, target))

    def commit(self, count: Optional[int] = None) -> list[Path]:
        """Rename the first ``count`` (default: all) staged files into place; return them."""
        count = len(self._staged) if count is None else count
        todo, self._staged = self._staged[:count], self._staged[count:]
        self._kept = max(0, self._kept - count)
        folders: set[Path] = set()
        try:
            while todo:
                tmp, target = todo[0]
                os.replace(tmp, target)
                _untrack(tmp)
                todo.pop(0)
                self.committed.append(target)
                folders.add(target.parent)
        except OSError as error:
            raise ExportError(f"Can't write {todo[0][1]}: {describe_os_error(error)}.") from error
        finally:
            for tmp, _ in todo:
                _discard(tmp)
        for folder in folders:
            _fsync_folder(folder)
        return list(self.committed)

    def discard(self) -> None:
        """Remove every staged temporary file; the targets stay as they were."""
        for tmp, _ in self._staged:
            _discard(tmp)
        self._staged, self._kept = [], 0


@contextlib.contextmanager
def staged_writes(*, commit: bool = True) -> Iterator[WriteBatch]:
    """All-or-nothing for a set of files: nothing is renamed until the block ends cleanly.

    A cancel (:class:`~..errors.CancelledError`, ``KeyboardInterrupt``, ``SystemExit``)
    inside the block leaves every target as it was and no temporary file; any other
    failure keeps only what :meth:`WriteBatch.keep_staged` marked. Batches nest: an
    inner one commits into nothing but its own files. With ``commit=False`` a clean
    end leaves the complete files staged: the caller renames them with
    :meth:`WriteBatch.commit` or drops them with :meth:`WriteBatch.discard` (a worker
    thread writes, the thread that decides between finish and cancel commits).
    """
    batch = WriteBatch()
    token = _batch.set(batch)
    try:
        yield batch
    except BaseException as error:
        _batch.reset(token)
        token = None
        if isinstance(error, (CancelledError, KeyboardInterrupt, SystemExit)):
            batch.discard()
        else:
            kept = batch._kept
            try:
                batch.commit(kept)
            finally:
                batch.discard()
        raise
    else:
        _batch.reset(token)
        token = None
        if commit:
            batch.commit()
    finally:
        if token is not None:
            _batch.reset(token)


def remove_temporary_files() -> int:
    """Delete every temporary file this process is writing or has staged; return how many.

    For a hard exit (a second Ctrl-C, SIGTERM during clean-up) that can't unwind
    the ``with`` blocks which would normally remove them.
    """
    with _live_lock:
        paths = list(_live)
        _live.clear()
    removed = 0
    for tmp in paths:
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def _track(tmp: Path) -> None:
    with _live_lock:
        _live.add(tmp)


def _untrack(tmp: Path) -> None:
    with _live_lock:
        _live.discard(tmp)


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()
    _untrack(tmp)


def _keep_permissions(target: Path, tmp: Path) -> None:
    """Give the new file the old file's mode, or the umask default (mkstemp makes it 0600)."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_current_umask()
    os.chmod(tmp, mode)


def _current_umask() -> int:
    """The process umask, read without ``os.umask`` (which would briefly change it for
    every thread)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return 0o022


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; not possible (nor needed) on every platform."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
