"""``python -m blender_img3d``: the command line outside Blender."""

import signal
import sys

try:
    from .cli.main import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C while the CLI was still importing: nothing was written yet
    print("error: interrupted; no output of this run was left half-written", file=sys.stderr)
    code = 130
# The command is over: a late Ctrl-C must not turn its exit code into a signal death.
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
