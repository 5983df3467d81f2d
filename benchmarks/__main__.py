"""``python -m benchmarks [--quick] [--out DIR] [--cases ...]``: see benchmarks/suite.py."""

import sys

from benchmarks.suite import main

sys.exit(main())
