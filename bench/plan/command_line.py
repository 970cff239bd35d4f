"""The command line a run is asked with: ``bench.run``'s flags, and the RunRequest they make.

``build_parser`` declares every flag; ``from_args`` turns parsed flags into the request
(run.json) in one place, refusing what no plan could run; ``flags_given`` names the flags a
user set, so that an error about a spec's field is said of the flag that set it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.choices import EXECUTION_FLAGS, METRICS
from bench.errors import OneLineArgumentParser, UsageError
from bench.plan import suites
from bench.plan.goals import parse_goal
from bench.plan.planner import PRESETS, RunRequest, default_preset, get_preset, gpu_share_argument
from bench.trial.execution import running_backend
from data.adience import FOLD_COUNT, training_folds
from data.decode import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

# TrialSpec / RunRequest / Scheduling field -> the flag that sets it, for one-line errors
SAME_NAME = ("epochs", "batch_size", "seed", "val_fold", "repeats", "max_concurrent", "gpus_per_trial")
SAME_NAME += ("checkpoint_interval", "precision", "jit", "data_on_device")
FLAGS = {field: "--" + field.replace("_", "-") for field in SAME_NAME}
FLAGS |= {"learning_rate": "--lr", "num_gpus": "--gpus"}
ABOUT = """Train and profile every trial of a suite (the gender-classification report's experiments, by
name) under Ray Tune, on this machine or a Ray cluster, and write runs/<run-id>/LEADERBOARD.md:
accuracy beside training time, throughput, size and energy, next to the report's figures."""
EXAMPLES = """examples:
  python -m bench.run --suite transfer                                  # the transfer study, a smoke run
  python -m bench.run --suite baseline --data ~/adience --preset paper  # the report's CNN on real faces
  python -m bench.run --suite selftest --repeats 3                      # the harness checked, 3 seeds a trial
  python -m bench.run --suite baseline --backend jax --precision bf16   # Keras's JAX backend, mixed bfloat16"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        "python -m bench.run",
        description=ABOUT,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _what_runs(parser)
    _trial_overrides(parser)
    _where_it_runs(parser)
    for flag, (choices, about) in EXECUTION_FLAGS.items():  # --backend, --precision, --jit, --data-on-device
        parser.add_argument(flag, choices=choices, help=about)
    return parser


def _what_runs(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--suite", metavar="NAME", help=f"experiment to run: {', '.join(suites.list_suites())}")
    add("--list", action="store_true", help="list the suites, their trials and the report's figures")
    add("--resume", type=Path, metavar="RUN_DIR", help="finish an interrupted run in RUN_DIR")
    add("--data", type=Path, metavar="PATH", help="Adience folder (fold files, faces/); default: built-in synthetic")
    add("--out", type=Path, default=Path("runs"), metavar="DIR", help="folder for runs/<run-id>/ (default: ./runs)")
    add("--preset", metavar="NAME", help=f"{', '.join(PRESETS)} (default: smoke; a suite file: as-written)")
    add("--image-size", type=int, metavar="N", help="cache images at N x N (default: the suite's, else the data's)")
    add("--force", action="store_true", help="allow the paper preset on synthetic data")
    add("--trials", metavar="PATTERN", help="only trials whose name matches this shell pattern")
    add("--model-module", action="append", default=[], metavar="MODULE", help="import it first: its models register")
    add("--goal", action="append", default=[], metavar="NAME=VALUE", help="a budget: accuracy, time, latency, ...")
    add("--metric", choices=METRICS, help="what ranks rows and reaches the target (default: the suite's, accuracy)")
    add("--save-models", action="store_true", help="export each row's best model to runs/<id>/models/ (.keras)")


def _trial_overrides(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--epochs", type=int, metavar="N", help="override every trial's epoch budget")
    add("--batch-size", type=int, metavar="N", help="override every trial's batch size")
    add("--lr", type=float, metavar="X", help="override every trial's learning rate")
    add("--seed", type=int, metavar="N", help="override every trial's seed (and the random search's)")
    add("--val-fold", type=int, metavar="K", help="validate on fold K (0-4), train on the others (default: 4)")
    add("--repeats", type=int, default=1, metavar="N", help="run each trial with N seeds: seed, seed+1, ...")
    add("--cv", action="store_true", help=f"{FOLD_COUNT}-fold cross-validation: each fold held out once")
    add("--protocol", default="report", metavar="NAME", help="report (fold 4 held out) or levi (Levi & Hassner's)")


def _where_it_runs(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--max-concurrent", type=int, metavar="N", help="trials at once (default: one per GPU, else one)")
    add("--gpus-per-trial", type=gpu_share_argument, metavar="X", help="GPU share per trial, (0, 1] or auto")
    add("--gpus", type=int, metavar="N", help="GPUs a local Ray may use (default: those it finds)")
    add("--asha", action="store_true", help="ASHA early stopping even where the suite does not ask")
    add("--address", metavar="HOST:PORT", help="join this Ray cluster (host:port or auto) instead of starting one")
    add("--storage", metavar="PATH|URI", help="Ray Tune's storage: a folder every node mounts, or s3://, gs://, ...")
    add("--checkpoint-interval", type=float, metavar="S", help="checkpoint at most every S s (60; 0: each epoch)")
    add("--dashboard", action="store_true", help="start the local Ray dashboard, on 127.0.0.1 only (no login)")


def flags_given(args: argparse.Namespace) -> dict[str, str]:
    """Field -> flag, for the fields the user set by a flag."""
    return {field: flag for field, flag in FLAGS.items() if getattr(args, flag[2:].replace("-", "_")) is not None}


def from_args(args: argparse.Namespace) -> RunRequest:
    """The request a new run's flags make; a missing suite, or the paper preset on synthetic data
    without ``--force``, is refused here, before any planning."""
    if not args.suite:
        raise UsageError(f"--suite is required ({', '.join(suites.list_suites())}), or --list, or --resume RUN_DIR")
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed}
    overrides |= {"precision": args.precision, "jit": args.jit, "data_on_device": args.data_on_device}
    overrides = {field: value for field, value in overrides.items() if value is not None}
    if args.val_fold is not None:
        overrides |= {"val_fold": args.val_fold, "train_folds": list(training_folds(args.val_fold))}
    keys = ("max_concurrent", "gpus_per_trial", "address", "dashboard", "storage", "save_models")
    scheduling = {key: getattr(args, key) for key in (*keys, "checkpoint_interval")}
    scheduling |= {"num_gpus": args.gpus, "seed": args.seed or 0}
    if args.image_size is not None and not MIN_IMAGE_SIZE <= args.image_size <= MAX_IMAGE_SIZE:
        raise UsageError(f"--image-size must be {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}, got {args.image_size}")
    request = RunRequest(
        suite=args.suite,
        preset=args.preset or default_preset(suites.get_suite(args.suite)),
        image_size=args.image_size,
        trials=args.trials,
        asha=args.asha,
        cv=args.cv,
        protocol=args.protocol,
        repeats=args.repeats,
        model_modules=tuple(args.model_module),
        goals=dict(map(parse_goal, args.goal)),
        metric=args.metric,
        data_root="" if args.data is None else str(args.data.expanduser().resolve()),
        synthetic=args.data is None,
        overrides=overrides,
        scheduling=scheduling,
        backend=running_backend(args.backend),
    )
    if request.synthetic and not get_preset(request.preset).synthetic_ok and not args.force:
        raise UsageError(f"preset {request.preset} on synthetic data takes hours and means little; add --force")
    return request
