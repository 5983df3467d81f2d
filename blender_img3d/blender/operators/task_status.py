"""Progress of the preferences' long tasks (dependency install, model download).

Plain Python objects, not RNA properties: they are transient, are written from
the modal operators' timer on the main thread (and, for downloads, from a worker
thread under a lock) and are only read by the preferences' ``draw``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import bpy

LOG_LINES_KEPT = 200


@dataclass
class TaskStatus:
    """What one long task is doing: running flag, fraction done, a status line, a log tail."""

    running: bool = False
    fraction: float = 0.0
    text: str = ""
    error: str = ""
    lines: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, text: str) -> None:
        with self.lock:
            self.running = True
            self.fraction = 0.0
            self.text = text
            self.error = ""
            self.lines.clear()
            self.cancel.clear()

    def update(self, fraction: float | None = None, text: str | None = None) -> None:
        with self.lock:
            if fraction is not None:
                self.fraction = min(1.0, max(0.0, float(fraction)))
            if text is not None:
                self.text = text

    def log(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def finish(self, text: str, error: str = "") -> None:
        with self.lock:
            self.running = False
            self.text = text
            self.error = error
            if not error:
                self.fraction = 1.0

    def tail(self, count: int) -> list[str]:
        with self.lock:
            return list(self.lines)[-count:]


def redraw_preferences() -> None:
    """Redraw open Preferences windows so the progress bar moves."""
    window_manager = bpy.context.window_manager
    if window_manager is None:
        return
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type in {"PREFERENCES", "VIEW_3D"}:
                area.tag_redraw()
