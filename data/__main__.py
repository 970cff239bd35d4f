"""``python -m data summarize PATH [--json]``: validate a dataset folder and count what it holds.

PATH is an Adience folder (fold files + faces/) or ``synthetic`` (the built-in data).
Known problems print one line on stderr and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from data.adience import FOLD_FILE_PATTERN, DatasetError
from data.summary import summarize, summary_json
from data.synthetic import ensure_synthetic_dataset

EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see python -m data --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="python -m data", description="Dataset tools of adience-bench.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    summary = commands.add_parser("summarize", help="validate a dataset folder and print its counts per fold")
    summary.add_argument("path", help="Adience folder (fold_0_data.txt ... + faces/) or 'synthetic'")
    summary.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    summary.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep repeated lines of a face, as Levi & Hassner's per-fold lists do (default: each face once)",
    )
    summary.add_argument("--workers", type=int, default=None, help="threads checking images (default: all cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (UsageError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head: the reader has all it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    root = ensure_synthetic_dataset() if args.path == "synthetic" else Path(args.path).expanduser()
    progress = sys.stderr if sys.stderr.isatty() else None
    summary = summarize(root, keep_duplicates=args.keep_duplicates, workers=args.workers, progress=progress)
    print(summary_json(summary) if args.json else summary.to_text())
    empty = [fold for fold, counts in summary.folds.items() if counts["images_found"] == 0]
    if empty:
        names = ", ".join(FOLD_FILE_PATTERN.format(fold=fold) for fold in empty)
        print(f"error: no usable labelled face with an image in {names}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
