"""``python -m blender_img3d``: the command line outside Blender.

Ctrl-C (SIGINT) and SIGTERM end the process with 130 / 143 and one line from
the moment this file's first statements have run: they install handlers
through the built-in ``_signal`` module before any other import. Until
``main()`` installs its own, unwinding handlers nothing has been written, so
such a signal prints the line and exits at once. Before these statements (the
interpreter starting, ``runpy`` finding this file) CPython ends the process by
the signal; RELIABILITY.md ("Exit codes") measures that window.
"""

import _signal
import os
import sys

from .cli.interrupts import exit_code_for, stopped_line


def _stop_before_any_output(signum, frame=None) -> None:
    """Exit 130 / 143 at once: the command hasn't started, so there is nothing to clean up."""
    os.write(2, (stopped_line(signum) + "\n").encode())
    os._exit(exit_code_for(signum))


for _sig in (_signal.SIGINT, _signal.SIGTERM):
    if _signal.getsignal(_sig) != _signal.SIG_IGN:  # an ignored signal (`cmd &`) stays ignored
        _signal.signal(_sig, _stop_before_any_output)

try:
    from .cli.main import main

    code = main()
except KeyboardInterrupt:  # raised by hand, or under a handler main() had already restored
    _stop_before_any_output(_signal.SIGINT)
# The command is over and has said how it ended: a late signal must not change that.
for _sig in (_signal.SIGINT, _signal.SIGTERM):
    _signal.signal(_sig, _signal.SIG_IGN)
sys.exit(code)
