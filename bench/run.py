"""``python -m bench.run``: parse -> plan -> execute -> report, and nothing else.

Each stage is its folder's: the flags make a RunRequest and a run is prepared (planned, its
data decoded) in bench/plan/, executed under Ray Tune in bench/execute/, and reported in
bench/report/. Known errors are one line and exit 2 (a bound a flag breaks is said of that
flag), others one line naming a traceback log and exit 1. A run's last line is
``Leaderboard: <path>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import bench.execute  # noqa: F401  (the Ray and trial environment: no GPU preallocation, before any backend loads)
from bench.errors import one_line_errors
from bench.quiet import import_tensorflow_quietly
from bench.trial.execution import keep_driver_off_accelerators, running_backend, select_backend

if __name__ == "__main__" or Path(sys.argv[0]).name == "adience-bench":
    # --backend sets KERAS_BACKEND for this process and its trials, before Keras loads
    select_backend(sys.argv[1:])
import_tensorflow_quietly()  # before anything below imports keras

import models  # noqa: E402
from bench.plan import suites  # noqa: E402
from bench.plan.command_line import build_parser, flags_given, from_args  # noqa: E402
from bench.plan.estimate import estimate_run  # noqa: E402
from bench.plan.goals import GoalError  # noqa: E402
from bench.plan.planner import PreparedRun, RunRequest, default_preset, prepare_run, preset_line  # noqa: E402
from bench.plan.storage import check_storage, given_storage, redact, restated, secrets_in  # noqa: E402
from bench.report import run_folder  # noqa: E402
from bench.specs import SpecError  # noqa: E402
from data.adience import DatasetError  # noqa: E402

KNOWN_ERRORS = (suites.UnknownSuiteError, DatasetError, SpecError, models.ModelOptionError, GoalError)
INTERRUPTED = "interrupted: finish it later with --resume RUN_DIR"


def main(argv: list[str] | None = None) -> int:
    given: dict[str, str] = {}  # field -> flag, for the fields the user set by a flag

    def describe(error: BaseException) -> str:
        return error.said_of_flags(given) if isinstance(error, SpecError) else str(error)

    def body() -> int:
        args = build_parser().parse_args(argv)
        given.update(flags_given(args))
        return dispatch(args, sys.argv[1:] if argv is None else argv)

    secrets = secrets_in(given_storage(sys.argv[1:] if argv is None else argv), dict(os.environ))
    return one_line_errors(body, KNOWN_ERRORS, describe, INTERRUPTED, lambda text: redact(text, secrets))


def dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    """``--list``, ``--resume RUN_DIR`` or a new run."""
    models.import_model_modules(args.model_module)  # before a suite file names one of their models
    if args.list:
        print(suites.describe_suites([args.suite] if args.suite else None))
        if args.suite:  # which preset a run of it gets
            suite = suites.get_suite(args.suite)
            print(preset_line(suite, args.preset or default_preset(suite)))
        return 0
    if args.resume:
        return resume(args.resume.expanduser(), args.storage)
    return new_run(args, argv)


def new_run(args: argparse.Namespace, argv: list[str]) -> int:
    request = from_args(args)
    run_folder.check_out_folder(args.out)
    check_storage(request.scheduling.storage)  # a bucket that cannot be written: one line, before data and Ray
    _drive_on_cpu()
    prepared = prepare_run(request)  # a bad suite, --trials or override fails here, before data and Ray
    data = prepared.data
    estimated = estimate_run(prepared.plan.all_specs, data.split_sizes, prepared.plan.scheduling, data.cache.image_size)
    print(estimated.line)
    run_dir = run_folder.start_run(args.out, prepared.request, prepared.plan, ["-m", "bench.run", *argv])
    return execute_and_report(prepared, run_dir, resume=False, estimates=estimated.trials)


def resume(run_dir: Path, storage: str | None = None) -> int:
    """Finish ``run_dir``'s run; ``storage`` restates a storage URI whose credentials run.json masks."""
    request = RunRequest.from_file(run_dir / run_folder.RUN_FILE)
    scheduling = dataclasses.replace(request.scheduling, storage=restated(request.scheduling.storage, storage))
    request = dataclasses.replace(request, scheduling=scheduling)
    check_storage(scheduling.storage)
    running_backend(request.backend)
    _drive_on_cpu()
    prepared = prepare_run(request)
    print(f"Resuming {run_dir.name}: suite {request.suite}")
    return execute_and_report(prepared, run_dir, resume=True)


def _drive_on_cpu() -> None:
    """The models this process builds (estimates, GPU shares) hold no GPU: its trials need them."""
    warning = keep_driver_off_accelerators()
    if warning:
        print(warning, file=sys.stderr)


def execute_and_report(prepared: PreparedRun, run_dir: Path, *, resume: bool, estimates=None) -> int:
    from bench.execute.runner import run_plan  # imports ray: keep argument errors fast

    planned, data = prepared.plan, prepared.data
    records = run_plan(planned, data.cache, run_dir, resume=resume, estimates=estimates or {})
    written = run_folder.write_report(run_dir, prepared.request, planned, data, records)
    print("\n".join(written.closing_lines()))
    return written.exit_code


if __name__ == "__main__":
    sys.exit(main())
