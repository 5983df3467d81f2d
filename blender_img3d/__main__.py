"""``python -m blender_img3d``: the command line outside Blender."""

import sys

from .cli.main import main

sys.exit(main())
