"""A server log that strangers can neither forge nor flood.

Anything a client sends may end up in a log line (a path, a file name, an
error message quoting a value). :func:`escape_controls` writes every control
character (CR, LF, ESC, the C1 range, Unicode line separators) as a visible
escape, so one request is one line and can't paint a fake one after it.

Errors and warnings a client can provoke at line rate (uvicorn's "Invalid
HTTP request", asyncio's accept failures with their tracebacks) go through a
per-message budget: :data:`BURST` records of the same message per
:data:`WINDOW_SECONDS`, then silence, then one line saying how many were
dropped. Info lines (the access log: one line per request) are not limited.

:func:`install_log_guard` puts :class:`LogGuard` on the root logger's
handlers, which every logger's records reach, ``serve`` calls it at start-up.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Optional

BURST = 5
WINDOW_SECONDS = 60.0
MAX_KEYS = 1024  # distinct messages tracked at once; the oldest are forgotten

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with every control character as ``\\xNN``/``\\uNNNN`` (a backslash stays one)."""
    return _CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


class LogGuard(logging.Filter):
    """Escapes control characters in each record's message; rate-limits repeated warnings."""

    def __init__(
        self, burst: int = BURST, window: float = WINDOW_SECONDS, clock=time.monotonic
    ) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        dropped = 0
        if record.levelno >= logging.WARNING:
            allowed, dropped = self._admit(record)
            if not allowed:
                return False
        message = escape_controls(record.getMessage())
        if dropped:
            message += f" ({dropped} more like this in the last {self.window:g} s not logged)"
        record.msg, record.args = message, None
        return True

    def _admit(self, record: logging.LogRecord) -> tuple[bool, int]:
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = self.clock()
        with self._lock:
            entry: Optional[list[float]] = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window:
                dropped = int(entry[2]) if entry is not None else 0
                if len(self._seen) >= MAX_KEYS:
                    self._seen.pop(next(iter(self._seen)))
                self._seen.pop(key, None)
                self._seen[key] = [now, 1, 0]
                return True, dropped
            entry[1] += 1
            if entry[1] <= self.burst:
                return True, 0
            entry[2] += 1
            return False, 0


def install_log_guard(logger: Optional[logging.Logger] = None) -> LogGuard:
    """Put one :class:`LogGuard` on every handler of ``logger`` (the root logger by default)."""
    logger = logger or logging.getLogger()
    guard = LogGuard()
    for handler in logger.handlers:
        if not any(isinstance(f, LogGuard) for f in handler.filters):
            handler.addFilter(guard)
    return guard
