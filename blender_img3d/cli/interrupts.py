"""What a signal ends a command with: its exit code and its one line on stderr.

Imports only the built-in ``_signal`` (``signal`` itself would import ``enum``),
so ``__main__`` can load it and install its handlers before anything else.
"""

import _signal

EXIT_CANCELLED = 128 + _signal.SIGINT  # 130: interrupted (Ctrl-C) or cancelled
EXIT_TERMINATED = 128 + _signal.SIGTERM  # 143


def exit_code_for(signum: int) -> int:
    """130 for SIGINT (and any other interrupt), 143 for SIGTERM."""
    return EXIT_TERMINATED if signum == _signal.SIGTERM else EXIT_CANCELLED


def stopped_line(signum: int) -> str:
    """The one line the CLI prints when a signal stopped it (without the newline)."""
    what = "terminated" if signum == _signal.SIGTERM else "interrupted"
    return f"error: {what}; no output of this run was left half-written"
