"""``python -m bench.compare``: the board across runs, and two runs compared (bench/report/compare.py)."""

import sys

from bench.report.compare import main

if __name__ == "__main__":
    sys.exit(main())
