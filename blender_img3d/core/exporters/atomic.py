"""All-or-nothing file writes: a reader sees the old file or the complete new one, never half.

Data goes to a hidden temporary file in the target's own folder (so the final
``os.replace`` is a same-filesystem rename, which POSIX and Windows make atomic),
is flushed and fsynced, and only then renamed over the target. Any failure on
the way removes the temporary file, leaves the previous file untouched and is
raised as :class:`ExportError` with the operating system's reason.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Optional, Union

from ..errors import ExportError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

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
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write writes new files only (mode 'w' or 'wb'), got {mode!r}")
    target = check_target(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise ExportError(f"Can't write {target}: {describe_os_error(error)}.") from error
    tmp = Path(tmp_name)
    replaced = False
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding or "utf-8", "errors": errors}
        if "b" not in mode:
            kwargs["newline"] = newline
        with open(fd, mode, **kwargs) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        _keep_permissions(target, tmp)
        os.replace(tmp, target)
        replaced = True
        _fsync_folder(target.parent)
    except OSError as error:
        raise ExportError(f"Can't write {target}: {describe_os_error(error)}.") from error
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                tmp.unlink()
    log.debug("wrote %s", target)


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
