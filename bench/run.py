"""``python -m bench.run``: parse arguments -> Suite -> runner -> results -> leaderboard.

Known errors (bad suite, data path, preset, override or cluster address) print one line
and exit 2; an unexpected one prints one line naming a log file with the traceback and
exits 1. The last line of a successful run is ``Leaderboard: <path>``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from bench.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before keras is imported below

from bench.env import collect_manifest, read_manifest, write_manifest  # noqa: E402
from bench.errors import RunnerError  # noqa: E402
from bench.estimate import estimate_run_seconds, format_duration, gpu_share, training_memory_bytes  # noqa: E402
from bench.leaderboard import (  # noqa: E402
    Goals,
    RunInfo,
    save_run_info,
    write_cross_run_leaderboard,
    write_leaderboard,
)
from bench.profiler import local_gpu_count, measure_cpu_matmul_peak, smallest_gpu_memory_bytes  # noqa: E402
from bench.results import atomic_write_text, epochs_table, trials_table, write_table  # noqa: E402
from bench.specs import PRESETS, RandomSearch, SpecError, TrialSpec, get_preset  # noqa: E402
from bench.suites import Suite, UnknownSuiteError, get_suite, list_suites  # noqa: E402
from data.adience import FOLD_COUNT, DatasetError, load_faces, require_nonempty_split, split_folds  # noqa: E402
from data.cache import ensure_cache  # noqa: E402
from data.synthetic import ensure_synthetic_dataset  # noqa: E402

EXIT_USAGE = 2
EXIT_UNEXPECTED = 1
RUN_FILE = "run.json"  # what a run was asked to do; --resume reads it back


class UsageError(Exception):
    """A known, user-fixable problem: printed as one line, exit code 2."""


def _gpu_share_argument(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus-per-trial takes a number in (0, 1] or auto, got {value!r}") from None
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"--gpus-per-trial must be in (0, 1], got {value}")
    return share


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see python -m bench.run --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", help=f"experiment to run: {', '.join(list_suites())}")
    parser.add_argument("--list", action="store_true", help="list the suites, their trials and the report's figures")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="finish an interrupted run in RUN_DIR")
    parser.add_argument(
        "--data", type=Path, help="Adience folder (fold files + faces/); default: built-in synthetic data"
    )
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for runs/<run-id>/ (default: ./runs)")
    parser.add_argument("--preset", default=None, help=f"{', '.join(PRESETS)} (default: smoke)")
    parser.add_argument("--force", action="store_true", help="allow the paper preset on synthetic data")
    parser.add_argument("--trials", metavar="PATTERN", help="only trials whose name matches this shell pattern")
    parser.add_argument("--epochs", type=int, help="override every trial's epoch budget")
    parser.add_argument("--batch-size", type=int, help="override every trial's batch size")
    parser.add_argument("--lr", type=float, help="override every trial's learning rate")
    parser.add_argument("--seed", type=int, help="override every trial's seed (and the random search's)")
    parser.add_argument(
        "--val-fold", type=int, help="validate on this fold (0-4) and train on the other four (default: the suite's)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="run each trial with N seeds: seed, seed+1, ...")
    parser.add_argument(
        "--cv", action="store_true", help=f"{FOLD_COUNT}-fold cross-validation: each fold held out once"
    )
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: one per GPU, else one)")
    parser.add_argument(
        "--gpus-per-trial",
        type=_gpu_share_argument,
        help="GPU share per trial in (0, 1] (0.25 packs four per GPU), or auto: sized from each model's training memory",
    )
    parser.add_argument("--gpus", type=int, help="GPUs a local Ray may use (default: those it finds)")
    parser.add_argument("--asha", action="store_true", help="ASHA early stopping even where the suite does not ask")
    parser.add_argument("--address", help="join this Ray cluster (host:port or auto) instead of starting one")
    parser.add_argument(
        "--dashboard", action="store_true", help="start the local Ray dashboard, on 127.0.0.1 only (it has no login)"
    )
    return parser


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to plan (or re-plan, on --resume) a run; saved as run.json."""

    suite: str
    preset: str
    data_root: str
    synthetic: bool
    trials: str | None
    overrides: dict
    asha: bool
    scheduling: dict
    repeats: int = 1
    cv: bool = False

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> RunRequest:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise UsageError(f"{path.parent} is not a run folder (it has no {RUN_FILE})") from None
        except (json.JSONDecodeError, TypeError) as error:
            raise UsageError(f"{path} is damaged: {error}") from None


@dataclass(frozen=True)
class Plan:
    suite: Suite
    specs: list[TrialSpec]
    search: RandomSearch | None


def plan_run(request: RunRequest) -> Plan:
    """The suite's trials after preset, overrides and the --trials filter."""
    suite = get_suite(request.suite)
    general = get_preset(request.preset)
    specs: list[TrialSpec] = []
    search = None
    for section in suite.sections():
        preset = section.smoke if (section.smoke and general.name == "smoke") else general

        def prepare(spec: TrialSpec, preset=preset) -> TrialSpec:
            return preset.apply(spec).replace(**request.overrides)

        specs += expand_specs([prepare(spec) for spec in section.specs], request.repeats, request.cv)
        if section.search is not None:
            search = replace(section.search, base=prepare(section.search.base))
    if request.trials:
        specs = [spec for spec in specs if fnmatch.fnmatchcase(spec.name, request.trials)]
        if search is not None and not any(fnmatch.fnmatchcase(t.name, request.trials) for t in search.templates()):
            search = None
        if not specs and search is None:
            names = ", ".join(spec.name for spec in suite.all_templates())
            raise UsageError(f"--trials {request.trials!r} matches no trial of suite {suite.name} ({names})")
    return Plan(suite, specs, search)


def expand_specs(specs: list[TrialSpec], repeats: int, cv: bool) -> list[TrialSpec]:
    """Each spec once per seed (``repeats``) and per validation fold (``cv``), grouped by its name.

    Names stay folder names: ``<name>.fold=<k>.seed=<s>``. Random-search samples are not
    repeated: each sample is a draw of its own.
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


def describe_suites() -> str:
    lines = []
    for name in list_suites():
        suite = get_suite(name)
        lines.append(f"{name}: {suite.description}")
        for spec in suite.all_templates():
            reference = (
                f"report {spec.reference:.4f} @ {spec.reference_epochs} epochs"
                if spec.reference
                else "no report figure"
            )
            searched = " (random search sample)" if spec.search_sample is not None else ""
            lines.append(f"  {spec.name}{searched}: {spec.model}, {spec.epochs} epochs; {reference}")
    return "\n".join(lines)


def check_out_folder(out: Path) -> None:
    """Refuse an --out that is a file or lies in a folder this user cannot write, before any work."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder: name a folder for the runs")
    existing = next((folder for folder in (out, *out.absolute().parents) if folder.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot create folders in {existing}; name a folder you can write")


def new_run_dir(out: Path, suite: str) -> tuple[str, Path]:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{suite}"
    suffix = 1
    while (out / run_id).exists():
        suffix += 1
        run_id = f"{stamp}-{suite}-{suffix}"
    run_dir = out / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as error:
        raise UsageError(f"cannot create the run folder {run_dir}: {error.strerror or error}") from None
    return run_id, run_dir


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (UsageError, UnknownSuiteError, DatasetError, SpecError, RunnerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finish it later with --resume RUN_DIR", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure: the traceback goes to a log file
        with tempfile.NamedTemporaryFile("w", prefix="adience-bench-error-", suffix=".log", delete=False) as log:
            traceback.print_exc(file=log)
        print(f"unexpected error: {type(error).__name__}: {error} (traceback in {log.name})", file=sys.stderr)
        return EXIT_UNEXPECTED


def _check_overrides(args: argparse.Namespace) -> dict:
    for flag in ("epochs", "batch_size", "max_concurrent", "gpus", "repeats"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "gpus" else 1):
            raise UsageError(f"--{flag.replace('_', '-')} must be >= {0 if flag == 'gpus' else 1}, got {value}")
    if args.lr is not None and not 0 < args.lr < math.inf:
        raise UsageError(f"--lr must be > 0 and finite, got {args.lr:g}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    names = {"epochs": "epochs", "batch_size": "batch_size", "seed": "seed", "lr": "learning_rate"}
    overrides = {field: getattr(args, flag) for flag, field in names.items() if getattr(args, flag) is not None}
    if args.val_fold is not None:
        if args.val_fold not in range(FOLD_COUNT):
            raise UsageError(f"--val-fold must be 0..{FOLD_COUNT - 1}, got {args.val_fold}")
        overrides["val_fold"] = args.val_fold
        overrides["train_folds"] = [fold for fold in range(FOLD_COUNT) if fold != args.val_fold]
    return overrides


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print(describe_suites())
        return 0
    if args.resume:
        return _resume(args.resume)
    if not args.suite:
        raise UsageError(f"--suite is required (one of {', '.join(list_suites())}), or --list, or --resume RUN_DIR")
    get_suite(args.suite)  # unknown suite: fail before anything else
    overrides = _check_overrides(args)
    check_out_folder(args.out)
    synthetic = args.data is None
    preset = get_preset(args.preset or "smoke")
    if synthetic and not preset.synthetic_ok and not args.force:
        raise UsageError(
            f"preset {preset.name} on synthetic data takes hours and means little; add --force to run it anyway"
        )
    request = RunRequest(
        suite=args.suite,
        preset=preset.name,
        data_root="",
        synthetic=synthetic,
        trials=args.trials,
        overrides=overrides,
        asha=args.asha,
        scheduling={
            "max_concurrent": args.max_concurrent,
            "gpus_per_trial": args.gpus_per_trial,
            "num_gpus": args.gpus,
            "address": args.address,
            "dashboard": args.dashboard,
            "seed": args.seed or 0,
        },
        repeats=args.repeats,
        cv=args.cv,
    )
    plan = plan_run(request)  # bad --trials or overrides: fail before data and Ray
    data_root = ensure_synthetic_dataset() if synthetic else args.data.expanduser().resolve()
    sizes = prepare_data(data_root, synthetic, plan)
    announce_estimate(plan, sizes, request.scheduling)
    request = RunRequest(**{**request.__dict__, "data_root": str(data_root)})
    run_id, run_dir = new_run_dir(args.out, args.suite)
    atomic_write_text(run_dir / RUN_FILE, request.to_json())
    manifest = collect_manifest(
        seeds=sorted({spec.seed for spec in plan.specs}),
        argv=["-m", "bench.run", *(sys.argv[1:] if argv is None else argv)],
        cpu_matmul_peak_flops=measure_cpu_matmul_peak(),  # once per run: the MFU peak of CPU trials
    )
    write_manifest(manifest, run_dir)
    return _execute(request, run_id, run_dir, resume=False)


def prepare_data(data_root: Path, synthetic: bool, plan: Plan) -> list[tuple[int, int]]:
    """Read the fold files, decode every face once into the cache, check every trial's split.

    Done here, before any trial starts, so concurrent trials only open the cache. Returns
    each planned trial's (training, validation) image counts.
    """
    faces = load_faces(data_root)
    print(f"Data: {'synthetic ' if synthetic else ''}{data_root}: {faces.summary()}")
    cache = ensure_cache(faces, progress=sys.stdout)
    for line in faces.warnings() + cache.warnings():
        print(line)
    sizes = []
    for spec in planned_specs(plan):
        train, val = split_folds(cache.faces, spec.val_fold, spec.train_folds)
        require_nonempty_split(train, val, spec.val_fold, spec.train_folds)
        sizes.append((min(len(train), spec.train_limit or len(train)), min(len(val), spec.val_limit or len(val))))
    print(f"Cache: {len(cache.faces)} faces at {cache.image_size}x{cache.image_size} in {cache.folder}")
    return sizes


def auto_gpu_shares(specs: list[TrialSpec]) -> dict[str, float]:
    """--gpus-per-trial auto: each trial's share from its model's estimated training memory."""
    memory = smallest_gpu_memory_bytes()
    if memory is None:
        raise UsageError("--gpus-per-trial auto sizes trials against the GPU's memory, and no NVIDIA GPU was found")
    shares = {spec.name: gpu_share(training_memory_bytes(spec), memory) for spec in specs}
    print("GPU shares (auto): " + ", ".join(f"{name} {share:g}" for name, share in shares.items()))
    return shares


def planned_specs(plan: Plan) -> list[TrialSpec]:
    return plan.specs + (plan.search.templates() if plan.search else [])


def announce_estimate(plan: Plan, sizes: list[tuple[int, int]], scheduling: dict) -> None:
    """Say up front how long the run should take (CPU runs; GPUs vary too widely)."""
    if scheduling.get("address") or scheduling.get("num_gpus") or local_gpu_count():
        print("Estimate: none up front on GPUs or clusters; the progress lines estimate from the first epochs")
        return
    concurrency = scheduling.get("max_concurrent") or 1
    seconds = estimate_run_seconds(planned_specs(plan), sizes, concurrency)
    print(f"Estimate: about {format_duration(seconds)} on this CPU (from FLOPs and layer counts; within ~2x)")


def _resume(run_dir: Path) -> int:
    run_dir = run_dir.expanduser()
    request = RunRequest.from_file(run_dir / RUN_FILE)
    prepare_data(Path(request.data_root), request.synthetic, plan_run(request))
    print(f"Resuming {run_dir.name}: suite {request.suite}")
    return _execute(request, run_dir.name, run_dir, resume=True)


def _execute(request: RunRequest, run_id: str, run_dir: Path, *, resume: bool) -> int:
    from bench.runner import Scheduling, run_trials  # imports ray: keep argument errors fast

    plan = plan_run(request)
    suite = plan.suite
    count = len(plan.specs) + (plan.search.samples if plan.search else 0)
    print(f"Run {run_id}: suite {suite.name}, {count} trial(s), preset {request.preset}")
    auto = request.scheduling.get("gpus_per_trial") == "auto"
    scheduling = Scheduling(
        **{**request.scheduling, "gpus_per_trial": None if auto else request.scheduling.get("gpus_per_trial")},
        gpu_shares=auto_gpu_shares(planned_specs(plan)) if auto else None,
        asha=suite.asha or request.asha,
        asha_grace_period=suite.asha_grace_period,
        asha_reduction_factor=suite.asha_reduction_factor,
    )
    records = run_trials(
        plan.specs,
        data_root=Path(request.data_root),
        run_dir=run_dir,
        scheduling=scheduling,
        search=plan.search,
        resume=resume,
    )
    manifest = read_manifest(run_dir)  # written when the run started; a resumed run keeps it
    trials = trials_table(
        records,
        target_accuracy=suite.target_accuracy,
        cpu_peak_flops=manifest.cpu_matmul_peak_flops if manifest else None,
    )
    epochs = epochs_table(records)
    write_table(epochs, run_dir / "epochs")
    write_table(trials, run_dir / "results")
    info = RunInfo(
        run_id=run_id,
        suite=suite.name,
        suite_description=suite.description,
        data=f"synthetic ({request.data_root})" if request.synthetic else request.data_root,
        preset=request.preset,
        goals=suite_goals(suite, request.synthetic),
        synthetic=request.synthetic,
        environment=manifest.summary() if manifest else "",
        device=manifest.device() if manifest else "",
        command=manifest.command if manifest else "",
        repeats=request.repeats,
        cv=request.cv,
    )
    save_run_info(info, run_dir)
    leaderboard = write_leaderboard(info, trials, run_dir / "LEADERBOARD.md", epochs=epochs)
    print(f"Across runs: {write_cross_run_leaderboard(run_dir.parent)}")
    print(summary_line(trials))
    print(f"Leaderboard: {leaderboard}")
    return 0


def summary_line(trials) -> str:
    counts = trials["status"].value_counts()
    parts = [f"{int(counts[status])} {status.replace('_', ' ')}" for status in counts.index]
    best = trials.dropna(subset=["best_val_accuracy"]).sort_values("best_val_accuracy", ascending=False)
    best_text = f"; best {best.iloc[0]['trial']} at {best.iloc[0]['best_val_accuracy']:.4f}" if len(best) else ""
    return f"Done: {len(trials)} trial(s): {', '.join(parts)}{best_text}"


if __name__ == "__main__":
    sys.exit(main())
