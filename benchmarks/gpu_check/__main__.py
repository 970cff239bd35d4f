"""``python -m benchmarks.gpu_check``: the check's entry point (see the package's docstring)."""

import sys

from benchmarks.gpu_check.check import main

sys.exit(main())
