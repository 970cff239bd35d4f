"""The worker processes: each trains one trial through ``bench.trial.fit.run_trial`` (one process
per trainer, spawned, so every trainer has a fresh backend as a Ray worker does), or measures the
matmul peaks; and the parent's handle on a worker.

A trainer's protocol with the parent, over a pipe: every epoch report ("epoch", figures);
"compiled" at the start of epoch 2 (epoch 1 held the compiles), then it waits for "go" (the
parent releases packed trainers together, after each compiled alone); "done" at the start of
the extra last epoch, then it ends (that epoch, and the over-sampled evaluation after the
trial's last one, are never run: the table wants speeds only).
"""

from __future__ import annotations

import contextlib
import math
import os
import traceback
from dataclasses import asdict
from multiprocessing.connection import Connection

from benchmarks.gpu_check.settings import DATA_ON_DEVICE, SUITES, RowPlan, Settings, elapsed, set_environment

# the figures of an epoch report the table reads (the rest of the trial's report stays in the worker)
REPORTED = (
    "epoch",
    "epoch_seconds",
    "train_seconds",
    "train_images_per_sec",
    "train_images",
    "elapsed_seconds",
    "energy_j",
    "power_w",
    "gpu_util",
    "gpu_memory_bytes",
    "process_gpu_memory_bytes",
    "energy_source",
    "gpu_names",
    "gpu_shared",
    "nvml_reason",
    "infer_images_per_sec",
    "latency_ms_p50",
    "flops_per_image",
    "train_flops_per_image",
    "params",
    "backend",
    "precision",
    "jit",
    "data_on_device",
    "val_accuracy",
)


def trial_spec(plan: RowPlan, settings: Settings):
    """The report's row for ``plan.model`` (the suites' spec with the best published figure; a
    default spec for a model in no suite) at this run's sizes, random weights, no early stop."""
    from bench.plan.suites import report_spec
    from bench.specs import TrialSpec

    base = report_spec(plan.model, SUITES) or TrialSpec(name=f"gpu_check-{plan.model}", model=plan.model)
    base = base.without_weights()  # speed and energy do not depend on the values; nothing to download
    return base.replace(
        name=f"gpu_check-{plan.model}-{plan.precision}-{plan.data}",
        model_options={**base.model_options, "input_size": settings.input_size},
        batch_size=settings.batch_size,
        precision=plan.precision,
        jit="auto",
        data_on_device=DATA_ON_DEVICE[plan.data],
        run_eagerly=False,
        epochs=settings.epochs + 1,  # the extra epoch is never run: the worker ends at its start
        patience=None,
        train_limit=settings.train_images,
        val_limit=settings.val_images,
    )


def _redirect_output(log_path: str) -> None:
    """The frameworks' chatter goes to the worker's log, out of the table."""
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)


def _send_error(connection: Connection, error: BaseException) -> None:
    traceback.print_exc()
    first_line = str(error).splitlines()[0] if str(error) else ""
    with contextlib.suppress(Exception):  # the parent went away
        connection.send(("error", f"{type(error).__name__}: {first_line}"))


def trainer_main(connection: Connection, plan: RowPlan, settings: Settings, cache_folder: str, log_path: str) -> None:
    """A trainer process: ``run_trial`` on the synthetic cache, its reports sent to the parent."""
    _redirect_output(log_path)
    try:
        set_environment(settings.backend)
        from bench.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        import keras

        from bench.trial.fit import run_trial
        from data.cache import open_cache

        spec = trial_spec(plan, settings)

        class Gate(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    connection.send(("compiled", elapsed()))
                    if connection.recv() != "go":
                        os._exit(0)
                elif epoch == spec.epochs - 1:
                    connection.send(("done", elapsed()))
                    connection.close()
                    os._exit(0)  # the extra epoch and the trial's last-epoch evaluation unrun

        def report(metrics: dict, checkpoint=None) -> None:
            connection.send(("epoch", {key: _plain(metrics.get(key)) for key in REPORTED}))

        run_trial(spec, open_cache(cache_folder), report, callbacks=[Gate()])
        connection.send(("error", "the trial ended before its last epoch"))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):  # the parent went away
        return
    except BaseException as error:  # noqa: BLE001  (the parent reports it in the row)
        _send_error(connection, error)


def _plain(value):
    """A number or text the pipe carries; NaN stays NaN."""
    if value is None or isinstance(value, str | int):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def peaks_main(connection: Connection, settings: Settings, precisions: list[str], log_path: str) -> None:
    """The peaks process: datasheet and measured matmul peaks, sent as a dict."""
    _redirect_output(log_path)
    try:
        set_environment(settings.backend)
        from bench.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from benchmarks.gpu_check.peaks import find_peaks

        peaks = find_peaks(precisions, settings.matmul_size, settings.matmul_repeats)
        connection.send(("peaks", asdict(peaks)))
    except BaseException as error:  # noqa: BLE001
        _send_error(connection, error)


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, context, name: str, target, args: tuple, log_dir):
        self.name = name
        self.log_path = str(log_dir / f"{name}.log")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args, self.log_path), name=name, daemon=True)
        self._child = child

    def start(self) -> None:
        self.process.start()
        self._child.close()  # the worker's end lives in the worker: its exit reads as end-of-file here

    def receive(self, timeout: float) -> tuple[str, object]:
        """The worker's next message; RuntimeError where it failed, died or said nothing in time."""
        if not self.connection.poll(max(timeout, 0.0)):
            raise RuntimeError(f"no answer within {math.ceil(timeout)} s (the deadline)")
        try:
            kind, payload = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise RuntimeError(f"worker ended (exit code {self.process.exitcode}); log {self.log_path}") from None
        if kind == "error":
            raise RuntimeError(f"{payload} (log {self.log_path})")
        return kind, payload

    def send(self, message) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(message)

    def stop(self) -> None:
        """Ended within seconds: by itself where it waits at its gate or is ending, else killed."""
        self.send("stop")
        if self.process.is_alive():
            self.process.join(timeout=10)
        self.kill()

    def kill(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
