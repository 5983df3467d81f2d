"""A progress bar on stderr for the CLI: redrawn in place on a terminal, phase lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from ..core.jobs import format_duration


class ProgressBar:
    """A ``ProgressCallback`` that draws ``phase [#####.....] k/n eta`` on ``stream``."""

    WIDTH = 28

    def __init__(self, stream: Optional[TextIO] = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._phase = ""
        self._phase_start = 0.0
        self._line_open = False

    def __call__(self, phase: str, step: int, total: int) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if phase != self._phase:
            self._end_line()
            self._phase, self._phase_start = phase, now
            if not self.interactive:
                self.stream.write(f"{phase}...\n")
                self.stream.flush()
        if self.interactive:
            self._draw(phase, step, total, now)

    def _draw(self, phase: str, step: int, total: int, now: float) -> None:
        fraction = step / total if total > 0 else 0.0
        filled = int(round(self.WIDTH * min(1.0, fraction)))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        elapsed = now - self._phase_start
        eta = ""
        if 0 < step < total:
            eta = f" ~{format_duration(elapsed / step * (total - step))} left"
        self.stream.write(f"\r{phase:<14} [{bar}] {step}/{total}{eta}\x1b[K")
        self.stream.flush()
        self._line_open = True

    def _end_line(self) -> None:
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False

    def close(self) -> None:
        self._end_line()
