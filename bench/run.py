"""``python -m bench.run``: parse arguments -> Suite -> runner -> results -> leaderboard.

Known errors (bad suite, data path, preset or override) print one line and exit 2; the
last line of a successful run is ``Leaderboard: <path>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from bench.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before keras is imported below

from bench.leaderboard import RunInfo, write_leaderboard  # noqa: E402
from bench.results import epochs_table, trials_table, write_table  # noqa: E402
from bench.specs import PRESETS, SpecError, get_preset  # noqa: E402
from bench.suites import UnknownSuiteError, get_suite, list_suites  # noqa: E402
from data.adience import FOLD_COUNT, DatasetError, load_faces, require_nonempty_split, split_folds  # noqa: E402
from data.cache import ensure_cache  # noqa: E402
from data.synthetic import ensure_synthetic_dataset  # noqa: E402

EXIT_USAGE = 2
EXIT_UNEXPECTED = 1


class UsageError(Exception):
    """A known, user-fixable problem: printed as one line, exit code 2."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see python -m bench.run --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, help=f"experiment to run: {', '.join(list_suites())}")
    parser.add_argument(
        "--data", type=Path, help="Adience folder (fold files + faces/); default: built-in synthetic data"
    )
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for runs/<run-id>/ (default: ./runs)")
    parser.add_argument("--preset", default=None, help=f"{', '.join(PRESETS)} (default: smoke)")
    parser.add_argument("--force", action="store_true", help="allow the paper preset on synthetic data")
    parser.add_argument("--epochs", type=int, help="override every trial's epoch budget")
    parser.add_argument("--batch-size", type=int, help="override every trial's batch size")
    parser.add_argument("--seed", type=int, help="override every trial's seed")
    parser.add_argument(
        "--val-fold", type=int, help="validate on this fold (0-4) and train on the other four (default: the suite's)"
    )
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: one per GPU, else one)")
    return parser


def new_run_dir(out: Path, suite: str) -> tuple[str, Path]:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{suite}"
    suffix = 1
    while (out / run_id).exists():
        suffix += 1
        run_id = f"{stamp}-{suite}-{suffix}"
    run_dir = out / run_id
    run_dir.mkdir(parents=True)
    return run_id, run_dir


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (UsageError, UnknownSuiteError, DatasetError, SpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure: the traceback goes to a log file
        with tempfile.NamedTemporaryFile("w", prefix="adience-bench-error-", suffix=".log", delete=False) as log:
            traceback.print_exc(file=log)
        print(f"unexpected error: {type(error).__name__}: {error} (traceback in {log.name})", file=sys.stderr)
        return EXIT_UNEXPECTED


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    suite = get_suite(args.suite)
    synthetic = args.data is None
    preset = get_preset(args.preset or "smoke")
    if synthetic and not preset.synthetic_ok and not args.force:
        raise UsageError(
            f"preset {preset.name} on synthetic data takes hours and means little; add --force to run it anyway"
        )
    for flag in ("epochs", "batch_size", "max_concurrent"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")

    overrides = {key: getattr(args, key) for key in ("epochs", "batch_size", "seed") if getattr(args, key) is not None}
    if args.val_fold is not None:
        if args.val_fold not in range(FOLD_COUNT):
            raise UsageError(f"--val-fold must be 0..{FOLD_COUNT - 1}, got {args.val_fold}")
        overrides["val_fold"] = args.val_fold
        overrides["train_folds"] = tuple(fold for fold in range(FOLD_COUNT) if fold != args.val_fold)
    specs = [preset.apply(spec).replace(**overrides) for spec in suite.specs]

    data_root = ensure_synthetic_dataset() if synthetic else args.data.expanduser().resolve()
    faces = load_faces(data_root)
    print(f"Data: {'synthetic ' if synthetic else ''}{data_root}: {faces.summary()}")
    # decoded once here, before any trial starts, so concurrent trials only open it
    cache = ensure_cache(faces, progress=sys.stdout)
    for line in faces.warnings() + cache.warnings():
        print(line)
    for spec in specs:
        require_nonempty_split(
            *split_folds(cache.faces, spec.val_fold, spec.train_folds), spec.val_fold, spec.train_folds
        )
    print(f"Cache: {len(cache.faces)} faces at {cache.image_size}x{cache.image_size} in {cache.folder}")

    run_id, run_dir = new_run_dir(args.out, suite.name)
    print(f"Run {run_id}: suite {suite.name}, {len(specs)} trial(s), preset {preset.name}")

    from bench.runner import run_specs  # imports ray: keep argument errors fast

    records = run_specs(
        specs, data_root=data_root, storage_dir=run_dir, experiment_name="tune", max_concurrent=args.max_concurrent
    )
    trials = trials_table(records)
    write_table(epochs_table(records), run_dir / "epochs")
    write_table(trials, run_dir / "results")
    info = RunInfo(
        run_id=run_id,
        suite=suite.name,
        suite_description=suite.description,
        data=f"synthetic ({data_root})" if synthetic else str(data_root),
        preset=preset.name,
        target_accuracy=suite.target_accuracy,
    )
    leaderboard = write_leaderboard(info, trials, run_dir / "LEADERBOARD.md")
    print(f"Leaderboard: {leaderboard}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
