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

from bench.env import collect_manifest, write_manifest  # noqa: E402
from bench.leaderboard import (  # noqa: E402
    Goals,
    RunInfo,
    save_run_info,
    write_cross_run_leaderboard,
    write_leaderboard,
)
from bench.profiler import measure_cpu_matmul_peak  # noqa: E402
from bench.results import epochs_table, trials_table, write_table  # noqa: E402
from bench.specs import PRESETS, SpecError, TrialSpec, get_preset  # noqa: E402
from bench.suites import Suite, UnknownSuiteError, get_suite, list_suites  # noqa: E402
from data.adience import FOLD_COUNT, DatasetError, load_faces  # noqa: E402
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
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: one per GPU, else one)")
    parser.add_argument("--repeats", type=int, default=1, help="run each trial with N seeds: seed, seed+1, ...")
    parser.add_argument(
        "--cv", action="store_true", help=f"{FOLD_COUNT}-fold cross-validation: each fold held out once"
    )
    return parser


def expand_specs(specs: list[TrialSpec], repeats: int, cv: bool) -> list[TrialSpec]:
    """Each spec once per seed (``repeats``) and per validation fold (``cv``), grouped by its name.

    Names stay folder names: ``<name>.fold=<k>.seed=<s>``.
    """
    if repeats == 1 and not cv:
        return specs
    expanded = []
    for spec in specs:
        for fold in range(FOLD_COUNT) if cv else (None,):
            for seed in range(spec.seed, spec.seed + repeats):
                changes: dict = {"group": spec.group or spec.name, "seed": seed}
                suffix = []
                if fold is not None:
                    changes["val_fold"] = fold
                    changes["train_folds"] = tuple(f for f in range(FOLD_COUNT) if f != fold)
                    suffix.append(f"fold={fold}")
                if repeats > 1:
                    suffix.append(f"seed={seed}")
                expanded.append(spec.replace(name=".".join([spec.name, *suffix]), **changes))
    return expanded


def suite_goals(suite: Suite, synthetic: bool) -> Goals:
    """The suite's goals; the accuracy goal is the report's figure per row on real data."""
    return Goals(
        target_accuracy=suite.target_accuracy,
        accuracy=suite.target_accuracy if synthetic else None,
        params=suite.params_budget,
        epochs_to_target=suite.epochs_to_target_budget,
    )


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
    for flag in ("epochs", "batch_size", "max_concurrent", "repeats"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")

    overrides = {key: getattr(args, key) for key in ("epochs", "batch_size", "seed") if getattr(args, key) is not None}
    specs = expand_specs([preset.apply(spec).replace(**overrides) for spec in suite.specs], args.repeats, args.cv)

    data_root = ensure_synthetic_dataset() if synthetic else args.data.expanduser().resolve()
    faces = load_faces(data_root)
    print(f"Data: {'synthetic ' if synthetic else ''}{data_root}: {faces.summary()}")

    run_id, run_dir = new_run_dir(args.out, suite.name)
    print(f"Run {run_id}: suite {suite.name}, {len(specs)} trial(s), preset {preset.name}")
    manifest = collect_manifest(
        seeds=[spec.seed for spec in specs],
        argv=["-m", "bench.run", *(sys.argv[1:] if argv is None else argv)],
        cpu_matmul_peak_flops=measure_cpu_matmul_peak(),  # once per run: the MFU peak of CPU trials
    )
    write_manifest(manifest, run_dir)

    from bench.runner import run_specs  # imports ray: keep argument errors fast

    records = run_specs(
        specs, data_root=data_root, storage_dir=run_dir, experiment_name="tune", max_concurrent=args.max_concurrent
    )
    trials = trials_table(records, target_accuracy=suite.target_accuracy, cpu_peak_flops=manifest.cpu_matmul_peak_flops)
    epochs = epochs_table(records)
    write_table(epochs, run_dir / "epochs")
    write_table(trials, run_dir / "results")
    info = RunInfo(
        run_id=run_id,
        suite=suite.name,
        suite_description=suite.description,
        data=f"synthetic ({data_root})" if synthetic else str(data_root),
        preset=preset.name,
        goals=suite_goals(suite, synthetic),
        synthetic=synthetic,
        environment=manifest.summary(),
        device=manifest.device(),
        command=manifest.command,
        repeats=args.repeats,
        cv=args.cv,
    )
    save_run_info(info, run_dir)
    leaderboard = write_leaderboard(info, trials, run_dir / "LEADERBOARD.md", epochs=epochs)
    write_cross_run_leaderboard(args.out)
    print(f"Leaderboard: {leaderboard}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
