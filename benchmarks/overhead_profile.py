"""Where the harness's training time goes: the overhead ratio taken apart, with CPU accounting.

The overhead benchmark (harness.measure_overhead) compares two things that differ in two
ways at once: the harness trial runs ``bench.trial.fit.run_trial`` (validation each epoch,
the reporter callback, the NVML sampler, the inference timing after epoch 1) *inside a Ray
worker process*, while the bare ``fit`` runs in the benchmark's own process. This script
runs five variants of the same TrialSpec in alternation, so each cost shows on its own:

- ``bare``: ``model.fit`` on the trial's batches, in this process (the reference);
- ``trial``: ``run_trial`` in this process, no Ray (what the trial code adds);
- ``bare-in-ray``: the same bare ``fit`` as a Ray Tune trial (what the Ray worker adds);
- ``harness``: ``run_trial`` as a Ray Tune trial, as ``bench.run`` runs it;
- ``bare-keras-adapter``: the bare ``fit`` given the PyDataset itself, which Keras wraps in
  an autotuned ``tf.data`` prefetch (how the trial fed ``fit`` before ``FitInput``).

While each runs, a sampler reads every thread's CPU time on the machine from /proc twice
a second; over the steady epochs' training windows (epoch 1, which holds graph
building, left out) the CPU seconds are summed per process (this driver, the trial's Ray
worker, raylet, gcs_server, Ray's other processes, everything else on the machine) and,
inside the process that trains, per thread. On a machine with N cores, N CPU-seconds per
second is all there is: CPU taken by Ray's daemons or by other users is CPU the model did
not get.

    python -m benchmarks.overhead_profile [--rounds 2] [--train 640] [--epochs 4] [--json FILE]

Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds data/, models/, bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from bench.specs import TrialSpec  # noqa: E402
from bench.trial.fit import load_trial_data, run_trial  # noqa: E402
from benchmarks.bare import bare_fit  # noqa: E402
from benchmarks.cpu_sampler import CpuSampler, thread_group  # noqa: E402
from benchmarks.harness import overhead_spec  # noqa: E402
from data.cache import FaceCache, ensure_cache  # noqa: E402
from data.synthetic import ensure_synthetic_dataset  # noqa: E402

VARIANTS = ("bare", "trial", "bare-in-ray", "harness", "bare-keras-adapter")


# --------------------------------------------------------------------------- the variants


def bare_fit_trial(spec: TrialSpec, cache: FaceCache, report: Callable[[dict], None], **options) -> None:
    """The bare ``fit`` as a trial function: reports one row per epoch, as a trial must."""
    bare_fit(spec, cache, report)


@dataclass
class WallStampedTrial:
    """Runs a trial function and appends each epoch's report, stamped with the wall clock and pid, to a file.

    Ray Tune trials run in another process; the file is how their epoch windows and
    process id reach the driver (the metrics Tune keeps are the harness's own).
    """

    inner: Callable
    log_path: str

    def __call__(self, spec: TrialSpec, cache: FaceCache, report: Callable[[dict], None], **options) -> None:
        def stamped(metrics: dict, **checkpoint) -> None:
            row = {
                "pid": os.getpid(),
                "wall": time.time(),
                "epoch": metrics["epoch"],
                "epoch_seconds": metrics["epoch_seconds"],
                "train_seconds": metrics["train_seconds"],
            }
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            report(metrics, **checkpoint)

        self.inner(spec, cache, stamped, **options)


def _windows_from_log(path: Path) -> tuple[list[tuple[float, float]], set[int]]:
    """Training windows of each epoch: the report follows the epoch's end (after validation)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    windows = []
    for row in rows:
        started = row["wall"] - row["epoch_seconds"]
        windows.append((started, started + row["train_seconds"]))
    return windows, {row["pid"] for row in rows}


def _in_ray(trial_function: Callable, spec: TrialSpec, cache: FaceCache) -> tuple[list[tuple[float, float]], set[int]]:
    from bench.execute.runner import run_trials  # imports ray

    run_dir = Path(tempfile.mkdtemp(prefix="overhead-profile-"))
    log = run_dir / "epochs.jsonl"
    try:
        (record,) = run_trials(
            [spec],
            cache=cache,
            run_dir=run_dir,
            write=lambda _line: None,
            trial_function=WallStampedTrial(trial_function, str(log)),
        )
        if record.error:
            raise RuntimeError(f"the {spec.name} trial failed: {record.error}")
        return _windows_from_log(log)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _in_process_trial(spec: TrialSpec, cache: FaceCache) -> tuple[list[tuple[float, float]], set[int]]:
    rows: list[dict] = []

    def report(metrics: dict) -> None:
        rows.append({**metrics, "wall": time.time()})

    run_trial(spec, cache, report)
    windows = []
    for row in rows:
        started = row["wall"] - row["epoch_seconds"]
        windows.append((started, started + row["train_seconds"]))
    return windows, {os.getpid()}


def run_variant(name: str, spec: TrialSpec, cache: FaceCache) -> tuple[list[tuple[float, float]], set[int]]:
    """Epoch training windows (wall clock) and the pid(s) that trained."""
    if name == "bare":
        return bare_fit(spec, cache)[0], {os.getpid()}
    if name == "trial":
        return _in_process_trial(spec, cache)
    if name == "bare-in-ray":
        return _in_ray(bare_fit_trial, spec, cache)
    if name == "harness":
        return _in_ray(run_trial, spec, cache)
    if name == "bare-keras-adapter":
        return bare_fit(spec, cache, keras_adapter=True)[0], {os.getpid()}
    raise ValueError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")


# --------------------------------------------------------------------------- measuring


@dataclass
class VariantRun:
    """One run of one variant: steady-epoch img/s and CPU seconds per wall second over the steady epochs."""

    variant: str
    images_per_sec: float
    steady_seconds: float
    cpu_by_process: dict[str, float] = field(default_factory=dict)  # CPU-s per wall-s
    cpu_by_thread: dict[str, float] = field(default_factory=dict)  # inside the training process
    stalled_seconds: float = 0.0  # the training process idle (under a tenth of a core) while training
    cpu_driver_by_thread: dict[str, float] = field(default_factory=dict)  # this driver, when a Ray worker trains


def measure_variant(name: str, spec: TrialSpec, cache: FaceCache, images: int) -> VariantRun:
    with CpuSampler() as sampler:
        windows, trial_pids = run_variant(name, spec, cache)
    steady = windows[1:]  # epoch 1 holds graph building
    if not steady:
        raise ValueError(f"{spec.epochs} epoch(s): at least 2 are needed for a steady epoch")
    seconds = sum(end - start for start, end in steady)
    by_process: dict[str, float] = defaultdict(float)
    by_thread: dict[str, float] = defaultdict(float)
    driver_by_thread: dict[str, float] = defaultdict(float)
    own = os.getpid()
    sampled = 0.0
    _moment, threads = sampler.nearest(steady[-1][1])
    process_names = {pid: name for pid, tid, name, _seconds, _cmdline in threads if pid == tid}
    for start, end in steady:
        span, used = sampler.cpu_between(start, end, trial_pids)
        sampled += span
        for thread in used:
            by_process[thread.process] += thread.seconds
            if thread.pid in trial_pids:
                by_thread[thread_group(thread, process_names.get(thread.pid, ""))] += thread.seconds
            elif thread.pid == own:
                driver_by_thread[thread_group(thread, process_names.get(own, ""))] += thread.seconds
    stalled = sum(sampler.stalled_seconds(start, end, trial_pids) for start, end in steady)
    return VariantRun(
        name,
        images * len(steady) / seconds,
        seconds,
        stalled_seconds=stalled,
        cpu_by_process={key: value / sampled for key, value in sorted(by_process.items())},
        cpu_by_thread={key: value / sampled for key, value in sorted(by_thread.items())},
        cpu_driver_by_thread={key: value / sampled for key, value in sorted(driver_by_thread.items())},
    )


def profile(
    cache: FaceCache, spec: TrialSpec, rounds: int, variants: tuple[str, ...] = VARIANTS, write=print
) -> list[VariantRun]:
    images = len(load_trial_data(spec, cache).train_labels)
    runs: list[VariantRun] = []
    for round_index in range(rounds):
        order = variants if round_index % 2 == 0 else tuple(reversed(variants))  # no variant always first
        for name in order:
            run = measure_variant(name, spec, cache, images)
            runs.append(run)
            write(
                f"round {round_index + 1} {name:>18}: {run.images_per_sec:6.2f} img/s over {run.steady_seconds:.1f} s "
                f"({run.stalled_seconds:.1f} s stalled); "
                + ", ".join(f"{key} {value:.2f}" for key, value in run.cpu_by_process.items())
            )
    return runs


def summarize(runs: list[VariantRun]) -> dict:
    """Per variant: median img/s, its ratio to ``bare``, median CPU-s per s by process and by thread."""
    summary = {}
    for name in VARIANTS:
        mine = [run for run in runs if run.variant == name]
        if not mine:
            continue
        keys = sorted({key for run in mine for key in run.cpu_by_process})
        thread_keys = sorted({key for run in mine for key in run.cpu_by_thread})
        summary[name] = {
            "images_per_sec": statistics.median(run.images_per_sec for run in mine),
            "runs": [round(run.images_per_sec, 2) for run in mine],
            "stalled_share": sum(run.stalled_seconds for run in mine) / sum(run.steady_seconds for run in mine),
            "cpu_by_process": {k: statistics.median(run.cpu_by_process.get(k, 0.0) for run in mine) for k in keys},
            "cpu_by_thread": {k: statistics.median(run.cpu_by_thread.get(k, 0.0) for run in mine) for k in thread_keys},
            "cpu_driver_by_thread": {
                k: statistics.median(run.cpu_driver_by_thread.get(k, 0.0) for run in mine)
                for k in sorted({key for run in mine for key in run.cpu_driver_by_thread})
            },
        }
    bare = summary.get("bare", {}).get("images_per_sec")
    for entry in summary.values():
        entry["ratio_to_bare"] = entry["images_per_sec"] / bare if bare else float("nan")
    return summary


def format_summary(summary: dict) -> str:
    processes = sorted({key for entry in summary.values() for key in entry["cpu_by_process"]})
    threads = sorted({key for entry in summary.values() for key in entry["cpu_by_thread"]})
    lines = [
        "| variant | steady img/s (median) | / bare | runs | stalled | " + " | ".join(processes) + " |",
        "|---|---:|---:|---|---:|" + "---:|" * len(processes),
    ]
    for name, entry in summary.items():
        cells = [f"{entry['cpu_by_process'].get(key, 0.0):.2f}" for key in processes]
        runs = ", ".join(f"{value:.1f}" for value in entry["runs"])
        lines.append(
            f"| {name} | {entry['images_per_sec']:.2f} | {entry['ratio_to_bare']:.3f} | {runs} | "
            f"{100 * entry['stalled_share']:.0f}% | " + " | ".join(cells) + " |"
        )
    lines += ["", "CPU-s per s inside the process that trains, by thread:", ""]
    lines += ["| variant | " + " | ".join(threads) + " |", "|---|" + "---:|" * len(threads)]
    for name, entry in summary.items():
        lines.append(
            f"| {name} | " + " | ".join(f"{entry['cpu_by_thread'].get(key, 0.0):.2f}" for key in threads) + " |"
        )
    for name, entry in summary.items():
        if entry["cpu_driver_by_thread"]:
            busiest = sorted(entry["cpu_driver_by_thread"].items(), key=lambda item: -item[1])[:6]
            lines.append(
                f"\n{name}: this driver's CPU-s per s by thread: " + ", ".join(f"{k} {v:.3f}" for k, v in busiest)
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant, in alternation (default 2)")
    parser.add_argument("--train", type=int, default=640, help="training faces per epoch (default 640)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, the first left out (default 4)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    parser.add_argument("--data", type=Path, help="Adience folder (default: the built-in synthetic data)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.train < 1 or args.epochs < 2:
        parser.error("--rounds and --train must be >= 1, --epochs >= 2")
    if not Path("/proc/self/task").is_dir():
        parser.error("this profile reads /proc: Linux only")
    cache = ensure_cache(args.data or ensure_synthetic_dataset())
    spec = replace(overhead_spec(), name="overhead-profile", train_limit=args.train, epochs=args.epochs)
    print(
        f"{spec.model}, batch {spec.batch_size}, {args.train} training faces, {args.epochs} epochs; "
        f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    variants = tuple(name for name in VARIANTS if name in args.variants)
    runs = profile(cache, spec, args.rounds, variants, write=lambda line: print(line, flush=True))
    summary = summarize(runs)
    print()
    print(format_summary(summary))
    if args.json:
        args.json.write_text(json.dumps({"runs": [run.__dict__ for run in runs], "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
