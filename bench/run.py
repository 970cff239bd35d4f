"""``python -m bench.run``, the command line only: parse -> plan -> data -> runner -> report.

Known errors are one line and exit 2 (a bound a flag breaks is said of that flag), others one
line naming a traceback log and exit 1. A run's last line is ``Leaderboard: <path>``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.choices import EXECUTION_FLAGS
from bench.errors import OneLineArgumentParser, UsageError, one_line_errors
from bench.quiet import import_tensorflow_quietly
from bench.trial.execution import running_backend, select_backend

if __name__ == "__main__" or Path(sys.argv[0]).name == "adience-bench":
    select_backend(sys.argv[1:])  # --backend: KERAS_BACKEND, for this process and its trials, before Keras loads
import_tensorflow_quietly()  # before anything below imports keras

import models  # noqa: E402
from bench.plan import dataset, estimate, suites  # noqa: E402
from bench.plan import planner as plan  # noqa: E402
from bench.plan.goals import GoalError, parse_goal  # noqa: E402
from bench.report import run_folder as report  # noqa: E402
from bench.specs import SpecError  # noqa: E402
from data.adience import FOLD_COUNT, DatasetError  # noqa: E402

# TrialSpec / RunRequest / Scheduling field -> the flag that sets it, for one-line errors
SAME_NAME = ("epochs", "batch_size", "seed", "val_fold", "repeats", "max_concurrent", "gpus_per_trial")
SAME_NAME += ("checkpoint_interval", "precision", "jit", "data_on_device")
FLAGS = {field: "--" + field.replace("_", "-") for field in SAME_NAME} | {"learning_rate": "--lr", "num_gpus": "--gpus"}
ABOUT = """Train and profile every trial of a suite (the gender-classification report's experiments, by
name) under Ray Tune, on this machine or a Ray cluster, and write runs/<run-id>/LEADERBOARD.md:
accuracy beside training time, throughput, size and energy, next to the report's figures."""
EXAMPLES = """examples:
  python -m bench.run --suite transfer                                  # the report's transfer study, a smoke run
  python -m bench.run --suite baseline --data ~/adience --preset paper  # Levi & Hassner's CNN on the real faces
  python -m bench.run --suite selftest --repeats 3                      # the harness checked, 3 seeds a trial
  python -m bench.run --suite baseline --backend jax --precision bf16   # on Keras's JAX backend, mixed bfloat16"""


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = OneLineArgumentParser("python -m bench.run", description=ABOUT, epilog=EXAMPLES, formatter_class=raw)
    add = parser.add_argument
    add("--suite", metavar="NAME", help=f"experiment to run: {', '.join(suites.list_suites())}")
    add("--list", action="store_true", help="list the suites, their trials and the report's figures")
    add("--resume", type=Path, metavar="RUN_DIR", help="finish an interrupted run in RUN_DIR")
    add("--data", type=Path, metavar="PATH", help="Adience folder (fold files, faces/); default: built-in synthetic")
    add("--out", type=Path, default=Path("runs"), metavar="DIR", help="folder for runs/<run-id>/ (default: ./runs)")
    add("--preset", default="smoke", metavar="NAME", help=f"{', '.join(plan.PRESETS)} (default: smoke)")
    add("--force", action="store_true", help="allow the paper preset on synthetic data")
    add("--trials", metavar="PATTERN", help="only trials whose name matches this shell pattern")
    add("--epochs", type=int, metavar="N", help="override every trial's epoch budget")
    add("--batch-size", type=int, metavar="N", help="override every trial's batch size")
    add("--lr", type=float, metavar="X", help="override every trial's learning rate")
    add("--seed", type=int, metavar="N", help="override every trial's seed (and the random search's)")
    add("--val-fold", type=int, metavar="K", help="validate on fold K (0-4), train on the others (default: 4)")
    add("--repeats", type=int, default=1, metavar="N", help="run each trial with N seeds: seed, seed+1, ...")
    add("--cv", action="store_true", help=f"{FOLD_COUNT}-fold cross-validation: each fold held out once")
    add("--protocol", default="report", metavar="NAME", help="report (fold 4 held out) or levi (Levi & Hassner's)")
    add("--model-module", action="append", default=[], metavar="MODULE", help="import it first: its models register")
    add("--goal", action="append", default=[], metavar="NAME=VALUE", help="a budget: accuracy, time, params, ...")
    add("--max-concurrent", type=int, metavar="N", help="trials at once (default: one per GPU, else one)")
    add("--gpus-per-trial", type=plan.gpu_share_argument, metavar="X", help="GPU share per trial, (0, 1] or auto")
    add("--gpus", type=int, metavar="N", help="GPUs a local Ray may use (default: those it finds)")
    add("--asha", action="store_true", help="ASHA early stopping even where the suite does not ask")
    add("--address", metavar="HOST:PORT", help="join this Ray cluster (host:port or auto) instead of starting one")
    add("--storage", metavar="PATH|URI", help="Ray Tune's storage: a folder every node mounts, or s3://, gs://, ...")
    add("--checkpoint-interval", type=float, metavar="S", help="checkpoint at most every S s (60; 0: each epoch)")
    add("--save-models", action="store_true", help="export each row's best model to runs/<id>/models/ (.keras)")
    add("--dashboard", action="store_true", help="start the local Ray dashboard, on 127.0.0.1 only (no login)")
    for flag, (choices, about) in EXECUTION_FLAGS.items():  # --backend, --precision, --jit, --data-on-device
        add(flag, choices=choices, help=about)
    return parser


def main(argv: list[str] | None = None) -> int:
    given: dict[str, str] = {}  # field -> flag, for the fields the user set by a flag

    def describe(error: BaseException) -> str:
        return error.said_of_flags(given) if isinstance(error, SpecError) else str(error)

    def body() -> int:
        args = build_parser().parse_args(argv)
        given.update({f: flag for f, flag in FLAGS.items() if getattr(args, flag[2:].replace("-", "_")) is not None})
        return _main(args, argv)

    known = (suites.UnknownSuiteError, DatasetError, SpecError, models.ModelOptionError, GoalError)
    return one_line_errors(body, known, describe, interrupted="interrupted: finish it later with --resume RUN_DIR")


def _request(args: argparse.Namespace) -> plan.RunRequest:
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed}
    overrides |= {"precision": args.precision, "jit": args.jit, "data_on_device": args.data_on_device}
    overrides = {field: value for field, value in overrides.items() if value is not None}
    if args.val_fold is not None:
        overrides |= {"val_fold": args.val_fold, "train_folds": [f for f in range(FOLD_COUNT) if f != args.val_fold]}
    keys = ("max_concurrent", "gpus_per_trial", "address", "dashboard", "storage", "save_models", "checkpoint_interval")
    scheduling = {"num_gpus": args.gpus, "seed": args.seed or 0} | {key: getattr(args, key) for key in keys}
    data_root = "" if args.data is None else str(args.data.expanduser().resolve())
    fields = {name: getattr(args, name) for name in ("suite", "preset", "trials", "asha", "cv", "protocol", "repeats")}
    fields |= {"model_modules": tuple(args.model_module), "goals": dict(map(parse_goal, args.goal))}
    fields |= {"data_root": data_root, "synthetic": args.data is None, "overrides": overrides}
    return plan.RunRequest(**fields, scheduling=scheduling, backend=running_backend(args.backend))


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.list:
        print(suites.describe_suites([args.suite] if args.suite else None))
        return 0
    if args.resume:
        run_dir = args.resume.expanduser()
        request = plan.RunRequest.from_file(run_dir / report.RUN_FILE)
        running_backend(request.backend)
        planned = plan.plan_run(request)
        data = dataset.prepare_dataset(request.data_root, request.synthetic, planned.all_specs)
        print(f"Resuming {run_dir.name}: suite {request.suite}")
        return _run(request, planned, data, run_dir, resume=True)
    if not args.suite:
        raise UsageError(f"--suite is required ({', '.join(suites.list_suites())}), or --list, or --resume RUN_DIR")
    request = _request(args)
    planned = plan.plan_run(request)  # a bad suite, --trials or override: fail before data and Ray
    report.check_out_folder(args.out)
    if request.synthetic and not plan.get_preset(request.preset).synthetic_ok and not args.force:
        raise UsageError(f"preset {request.preset} on synthetic data takes hours and means little; add --force")
    data = dataset.prepare_dataset(request.data_root, request.synthetic, planned.all_specs)
    estimated = estimate.estimate_run(planned.all_specs, data.split_sizes, planned.scheduling)
    print(estimated.line)
    request = replace(request, data_root=str(data.root))
    command = ["-m", "bench.run", *(sys.argv[1:] if argv is None else argv)]
    run_dir = report.start_run(args.out, request, planned, command)
    return _run(request, planned, data, run_dir, resume=False, epoch_seconds=estimated.epoch_seconds)


def _run(request, planned: plan.Plan, data: dataset.RunData, run_dir: Path, *, resume: bool, epoch_seconds=None) -> int:
    from bench.execute.runner import run_plan  # imports ray: keep argument errors fast

    records = run_plan(planned, data.cache, run_dir, resume=resume, epoch_seconds=epoch_seconds or {})
    written = report.write_report(run_dir, request, planned, data, records)
    print("\n".join(written.closing_lines()))
    return written.exit_code


if __name__ == "__main__":
    sys.exit(main())
