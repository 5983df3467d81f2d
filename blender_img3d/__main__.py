"""``python -m blender_img3d``: the command line outside Blender."""

import signal
import sys

try:
    from .cli.main import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C while Python was still importing: nothing was written yet
    code = 130
# The command is over: a late Ctrl-C must not turn its exit code into a signal death.
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
