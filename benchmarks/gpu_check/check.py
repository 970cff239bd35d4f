"""The run: the synthetic cache, the peaks, then the planned rows one at a time (each row's trainers
in their own processes), a deadline that prints the table whatever was measured, the JSON figures.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from benchmarks.gpu_check.peaks import Peaks
from benchmarks.gpu_check.settings import (
    COMPILE_GUESS_S,
    DEFAULT_COMPILE_GUESS_S,
    FIRST_EPOCH_PER_COMPILE,
    START_S,
    RowPlan,
    Settings,
    elapsed,
    parse_settings,
    progress,
    set_environment,
)
from benchmarks.gpu_check.table import Row, format_row, format_table, summarise
from benchmarks.gpu_check.worker import Worker, peaks_main, trainer_main

PEAKS_TIMEOUT_S = 90.0


@contextlib.contextmanager
def filtered_stderr():
    """File descriptor 2 captured meanwhile, then passed on without TensorFlow's known start-up notes."""
    from bench.quiet import KNOWN_NOISE

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(noise in line for noise in KNOWN_NOISE)))


class Check:
    """Plans the rows, trains them one after another, prints each row and then the whole table."""

    def __init__(self, settings: Settings, json_path: Path | None, log_dir: Path, argv: list[str]):
        self.settings = settings
        self.json_path = json_path
        self.log_dir = log_dir
        self.argv = argv
        self.context = multiprocessing.get_context("spawn")  # a fresh backend per process, as Ray's workers
        self.rows = [Row.planned(plan, settings.input_size, settings.batch_size) for plan in settings.rows]
        self.peaks = Peaks()
        self.manifest: dict = {}
        self.cache_folder = ""
        self.active: list[Worker] = []  # the running row's workers (the deadline ends them)
        self.running: Row | None = None
        self.compile_ratios: list[float] = []  # measured first epoch / COMPILE_GUESS_S, per row alone
        self.lock = threading.Lock()
        self.finished = False

    # the phases ---------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        watchdog = threading.Timer(max(0.0, s.deadline - elapsed()), self.on_deadline)
        watchdog.daemon = True
        watchdog.start()
        progress(
            f"{len(self.rows)} rows ({s.backend} backend, {'DRY' if s.dry else 'GPU'} sizes), one at a time; "
            f"deadline {s.deadline:.0f} s; worker logs in {self.log_dir}"
        )
        try:
            self.prepare()
            self.find_peaks()
            for row, plan in zip(self.rows, s.rows, strict=True):
                self.run_row(row, plan)
        finally:
            for worker in self.active:
                worker.kill()
        watchdog.cancel()
        self.report(cut=False)
        return 0

    def prepare(self) -> None:
        """The models known (else SystemExit 2), the synthetic cache built, the run's manifest."""
        with filtered_stderr():
            import models
            from data.cache import ensure_cache
            from data.synthetic import ensure_synthetic_dataset

            unknown = sorted({plan.model for plan in self.settings.rows if not models.is_registered(plan.model)})
            if unknown:
                print(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(models.list_models())})")
                raise SystemExit(2)
            cache = ensure_cache(ensure_synthetic_dataset())
            self.cache_folder = str(cache.folder)
            try:
                from bench.trial.env import collect_manifest

                argv = ["python -m benchmarks.gpu_check", *self.argv]
                self.manifest = collect_manifest(seeds=[0], argv=argv).to_dict()
            except Exception as error:  # the figures matter more than the manifest
                self.manifest = {"error": f"{type(error).__name__}: {error}"}
        progress(f"synthetic cache ready ({cache.slots} faces of {cache.image_size} px): {self.cache_folder}")

    def find_peaks(self) -> None:
        s = self.settings
        precisions = sorted({plan.precision for plan in s.rows} - {"auto"} | ({"fp32", "bf16"} & _auto(s.rows)))
        worker = Worker(self.context, "peaks", peaks_main, (s, precisions), self.log_dir)
        self.active = [worker]
        worker.start()
        try:
            _, payload = worker.receive(min(PEAKS_TIMEOUT_S, s.deadline - elapsed()))
            self.peaks = Peaks(**payload)
        except RuntimeError as error:
            self.peaks.datasheet_reason = f"the peaks process failed: {error}"
        worker.stop()
        self.active = []
        progress(f"peaks: datasheet {self.peaks.describe('datasheet')}; measured {self.peaks.describe('measured')}")

    def estimate_s(self, plan: RowPlan) -> float:
        """The row's seconds by the compile guesses, scaled by the rows measured so far."""
        s = self.settings
        alone = [r for r in self.rows if r.status == "measured" and r.trainers == 1 and _same(r, plan)]
        if alone:
            single = alone[0].row_s or 0.0
        else:
            ratios = self.compile_ratios or [FIRST_EPOCH_PER_COMPILE]
            single = START_S + COMPILE_GUESS_S.get(plan.model, DEFAULT_COMPILE_GUESS_S) * sum(ratios) / len(ratios)
            single += s.steady_epochs * 2.0
        if plan.trainers == 1:
            return single
        reused = alone and os.environ.get("JAX_COMPILATION_CACHE_DIR")  # the compiles come from JAX's cache
        return single + (plan.trainers - 1) * (START_S + 5.0 if reused else single)

    def run_row(self, row: Row, plan: RowPlan) -> None:
        """The row's trainers started one after another (each compiles alone), released together for
        the steady epochs, their reports summarised into ``row``."""
        s = self.settings
        needed = self.estimate_s(plan)
        if elapsed() + needed > s.deadline:
            row.status, row.note = "skipped", f"needs ~{needed:.0f} s, {max(0.0, s.deadline - elapsed()):.0f} s left"
            progress(f"{plan.label}: skipped ({row.note})")
            return
        progress(f"{plan.label}: starting (~{needed:.0f} s expected)")
        self.running = row
        started = elapsed()
        reports: list[list[dict]] = [[] for _ in range(plan.trainers)]
        try:
            for index in range(plan.trainers):
                name = f"{len([r for r in self.rows if r.status != 'not reached']) + 1:02d}-{index}-{plan.model}"
                worker = Worker(self.context, name, trainer_main, (plan, s, self.cache_folder), self.log_dir)
                self.active.append(worker)
                worker.start()
                self.collect(worker, reports[index], until="compiled")
            for worker in self.active:
                worker.send("go")
            for worker, trainer in zip(self.active, reports, strict=True):
                self.collect(worker, trainer, until="done")
        except RuntimeError as error:
            row.status, row.note = "failed", str(error)
            progress(f"{plan.label}: FAILED {error}")
        finally:
            for worker in self.active:
                worker.stop()
            self.active = []
        if row.status == "failed":
            return
        row.row_s = elapsed() - started
        summarise(row, reports, self.peaks.flops())
        if row.status == "measured" and row.trainers == 1 and row.first_epoch_s:
            self.compile_ratios.append(row.first_epoch_s / COMPILE_GUESS_S.get(row.model, DEFAULT_COMPILE_GUESS_S))
        progress(f"{row.label}: {row.status}; {format_row(row)}")

    def collect(self, worker: Worker, reports: list[dict], until: str) -> None:
        """The worker's epoch reports into ``reports`` until it says ``until``."""
        while True:
            kind, payload = worker.receive(self.settings.deadline - elapsed() + 5.0)
            if kind == "epoch":
                reports.append(payload)
            elif kind == until:
                return
            else:
                raise RuntimeError(f"{worker.name} said {kind!r}, expected {until!r}")

    # the table ----------------------------------------------------------------------------
    def on_deadline(self) -> None:
        """The watchdog: the table as it stands, the workers ended, the process with them."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            progress(f"deadline of {self.settings.deadline:.0f} s reached: the table as measured so far")
            for worker in list(self.active):
                worker.kill()
            for row in self.rows:
                if row.status == "not reached":
                    row.note = "deadline (was running)" if row is self.running else "deadline (not started)"
            self.print_report(cut=True)
            os._exit(0)

    def report(self, cut: bool) -> None:
        """The table, once: where the watchdog is printing it, this waits until it ends the process."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            self.print_report(cut)

    def print_report(self, cut: bool) -> None:
        s = self.settings
        versions = ", ".join(
            f"{name} {self.manifest[key]}"
            for name, key in (("Keras", "keras"), ("JAX", "jax"))
            if self.manifest.get(key)
        )
        gpu = self.peaks.device or next((r.gpu_names for r in self.rows if r.gpu_names), "") or "no GPU"
        print()
        print(
            f"GPU check{' (DRY: CPU-sized run)' if s.dry else ''}: {gpu}, Keras on {s.backend}"
            f"{f' ({versions})' if versions else ''}; {elapsed():.0f} s of a {s.deadline:.0f} s deadline"
            f"{' (cut short)' if cut else ''}"
        )
        print(
            f"Each row: bench.trial.fit.run_trial on the synthetic cache, {s.train_images} training and "
            f"{s.val_images} validation images an epoch, {s.epochs} epochs: the first (compiles, start-up) "
            f"apart; train img/s = the {s.steady_epochs} after it, their training images over the trial's own "
            "training seconds (validation excluded; packed: summed over the trainers, released together after "
            "each compiled alone); mJ/img = whole-GPU mean power / train img/s"
        )
        print(
            "MFU = training FLOPs/img x img/s over the peak of the row's precision: datasheet "
            f"{self.peaks.describe('datasheet')}; measured {self.peaks.describe('measured')}"
        )
        print()
        print(format_table(self.rows))
        reasons = sorted({row.nvml_reason for row in self.rows if row.nvml_reason})
        if reasons:
            print(f"\nGPU figures n/a: {'; '.join(reasons)}")
        if self.json_path is not None:
            figures = {
                "settings": asdict(s),
                "peaks": asdict(self.peaks),
                "cut_by_deadline": cut,
                "elapsed_s": elapsed(),
                "manifest": self.manifest,
                "rows": [asdict(row) for row in self.rows],
            }
            self.json_path.write_text(json.dumps(figures, indent=1, default=str) + "\n")
            print(f"\nFigures: {self.json_path}")
        sys.stdout.flush()


def _same(row: Row, plan: RowPlan) -> bool:
    return (row.model, row.precision, row.data) == (plan.model, plan.precision, plan.data)


def _auto(rows: tuple[RowPlan, ...]) -> set[str]:
    return {"fp32", "bf16"} if any(plan.precision == "auto" for plan in rows) else set()


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_settings(argv)
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    set_environment(settings.backend, compile_cache=str(log_dir / "jax-compile-cache"))
    check = Check(
        settings, Path(args.json) if args.json else None, log_dir, list(sys.argv[1:] if argv is None else argv)
    )
    return check.run()
