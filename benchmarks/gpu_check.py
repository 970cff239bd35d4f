"""GPU check: one device call of at most 8 minutes that prints ONE table of the report's training speeds.

What it measures, each row one configuration timed alone on the GPU (other workers idle):

1. Every report model (Levi & Hassner, MobileNetV3Large, ResNet50V2, EfficientNetV2M) at
   the report's sizes: 256x256 uint8 cache-sized images, the ``report`` policy's 227 crop on
   the device, batch 32, the suites' own row for the model (optimiser, options; random
   weights), built by the trial's own code (``bench.trial.fit.build_trial_model``), in fp32
   and bf16 (``mixed_bfloat16``), each with its data
   - ``stream``: uint8 batches from host numpy every step (``data.loader.ArrayBatches``
     through ``data.fit_input.FitInput``, as a trial without its data on the device), or
   - ``device``: the uint8 images held once on the device in a non-trainable variable and
     int32 indices per step (``bench.trial.fit.build_device_trainer`` + ``data.device.IndexBatches``).
   Trained with ``fit`` as a trial is: the first step (compile included) is timed apart,
   then one untimed warm-up epoch, then whole epochs for at least ``--steps`` steps and
   ``--min-seconds`` (img/s = images / seconds of that window).
2. Packing: 1, 2 and 4 Levi & Hassner trainers (separate processes, as Ray packs
   fractional-GPU trials; the trial's ``auto`` precision and data placement) timed together:
   summed img/s and energy per image.
3. Per row: NVML energy per image (the total-energy counter's delta over the timed window,
   whole device), mean power and GPU utilisation, the trainer's peak device memory (XLA's
   ``peak_bytes_in_use``), and MFU = training FLOPs per image (``bench.trial.flops.training_flops``)
   x img/s over the peaks of the row's precision: (a) the datasheet's dense peak
   (``bench.trial.mfu.device_peak``: H100 SXM and H200 989.4 TFLOP/s bf16, 494.7 TF32) and (b) a
   matrix-product peak measured here first (``keras.ops.matmul`` of two 8192x8192 matrices in
   that precision, the best of 5 timed rounds of 20 products).

Time: each configuration runs in its own spawned worker process (20 on the GPU: 16 rows
and 4 packed trainers), so the 16 CPU cores compile them side by side (all at once;
``--jobs`` caps it, longest first); the workers then wait, and the GPU is timed one row at
a time (~5 s a row), each worker ending after its row. A global ``--deadline`` (default
420 s, leaving a 480 s call a minute for pip and start-up) bounds the run: workers still
compiling when only the timing phase's share is left (~110 s on the GPU) are stopped, rows
that no longer fit are skipped, and at the deadline a watchdog prints the table with
whatever was measured (every row is listed; unmeasured ones say why) and ends the run.
Progress lines carry the seconds since start. Compile times are measured beside the other
workers' compiles (and XLA's autotuning ran beside theirs). JAX preallocation is off
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``), or the workers could not share the GPU.

On the device (the ``run`` tool; an H200 with JAX/CUDA, PyTorch and pynvml but no
TensorFlow, no Ray, no Keras). Here, once, from the repository root:

    echo /.whl/ >> .git/info/exclude && ../shared/tools/offline_wheels.sh .whl   # 51 MB

then one ``run`` call with ``carry=[".whl"]`` and ``timeout_s=480``:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    && export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    && python3 benchmarks/gpu_check.py --json $OUT/gpu_check.json 2>&1 | tee $OUT/gpu_check.log

(5 s, 193 MB unpacked. keras, namex and optree are the only wheels this script needs
there: ``.whl/keras-*.whl .whl/namex-*.whl .whl/optree-*.whl`` alone carry 2.9 MB.)

``DRY=1 python benchmarks/gpu_check.py`` (or ``--dry``) runs the same code paths on a CPU
within its 300 s deadline: input 64, batch 8, 3-step epochs, Levi & Hassner in all four
rows and MobileNetV3Large in one (bf16, device: ``--no-thin`` gives it all four), packing 1
and 2, 3 workers compiling at once; GPU fields read n/a with the reason. Any flag given
overrides the DRY or GPU default. Keras's backend: ``--backend``, else $KERAS_BACKEND, else
TensorFlow where installed, else JAX.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait as wait_for_connections
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds data/, models/, bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.choices import RESOLVED_PRECISIONS  # noqa: E402  (keras-free: the settings need no backend)

STARTED = time.monotonic()
REPORT_MODELS = ("levi_hassner", "mobilenet_v3_large", "resnet50_v2", "efficientnet_v2_m")
PACKED_MODEL = "levi_hassner"
PRECISIONS = ("fp32", "bf16")  # the default rows; --precisions takes any of RESOLVED_PRECISIONS
DATA_PATHS = ("stream", "device")  # the images from host numpy each step / held on the device
DATA_ON_DEVICE = {"stream": "off", "device": "on", "auto": "auto"}
GPU_ENVIRONMENT = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
# a guess of the seconds each model takes to compile: workers start in this order, the longest first
COMPILE_GUESS_S = {"efficientnet_v2_m": 120.0, "resnet50_v2": 45.0, "mobilenet_v3_large": 45.0, "levi_hassner": 15.0}
SUITES = ("baseline", "transfer")  # where the report's rows for each model come from


@dataclass(frozen=True)
class Settings:
    """How big and how long; GPU defaults, DRY defaults, each overridden by its flag."""

    models: tuple[str, ...]
    precisions: tuple[str, ...]
    data: tuple[str, ...]
    pack: tuple[int, ...]
    pack_model: str
    pack_precision: str
    pack_data: str
    input_size: int
    batch_size: int
    epoch_steps: int  # steps per epoch: the image pool holds batch_size x epoch_steps images
    steps: int  # timed steps, at least
    min_seconds: float  # timed seconds, at least
    matmul_size: int
    matmul_repeats: int
    deadline: float  # seconds after the start when the table is printed whatever was measured
    jobs: int  # workers compiling at once
    thin: bool  # models after the first in one row only: the last precision and data placement
    dry: bool
    backend: str


GPU_DEFAULTS = dict(
    models=REPORT_MODELS,
    precisions=PRECISIONS,
    data=DATA_PATHS,
    pack=(1, 2, 4),
    pack_model=PACKED_MODEL,
    pack_precision="auto",
    pack_data="auto",
    input_size=227,
    batch_size=32,
    epoch_steps=32,
    steps=30,
    min_seconds=3.0,
    matmul_size=8192,
    matmul_repeats=20,
    deadline=420.0,
    jobs=0,
    thin=False,
)
DRY_DEFAULTS = dict(
    GPU_DEFAULTS,
    models=("levi_hassner", "mobilenet_v3_large"),
    pack=(1, 2),
    input_size=64,
    batch_size=8,
    epoch_steps=3,
    steps=3,
    min_seconds=0.3,
    matmul_size=256,
    matmul_repeats=4,
    deadline=300.0,
    jobs=3,
    thin=True,
)


def elapsed() -> float:
    return time.monotonic() - STARTED


def progress(message: str) -> None:
    print(f"[{elapsed():6.1f} s] {message}", flush=True)


def choose_backend(requested: str | None) -> str:
    """``requested``, else $KERAS_BACKEND, else tensorflow where it is installed, else jax."""
    if requested:
        return requested
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    return "tensorflow" if importlib.util.find_spec("tensorflow") else "jax"


def set_environment(backend: str) -> None:
    """Before Keras is imported (in this process and, inherited, in the workers)."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for key, value in GPU_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


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


# --- the workers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One worker: a model, a precision and a data placement (``auto`` resolved in the worker)."""

    key: str
    model: str
    precision: str  # fp32, bf16, auto
    data: str  # stream, device, auto


def trial_spec(model: str, settings: Settings, precision: str, data_on_device: str):
    """The report's row for ``model`` (the suites' spec with the best published figure), at
    this run's input and batch size, random weights; a default spec for a model in no suite."""
    from bench.plan.suites import get_suite
    from bench.specs import TrialSpec

    rows = [spec for suite in SUITES for spec in get_suite(suite).specs if spec.model == model]
    base = max(rows, key=lambda spec: -1.0 if spec.reference is None else spec.reference, default=None)
    if base is None:
        base = TrialSpec(name=f"gpu_check-{model}", model=model)
    options = {**base.model_options, "input_size": settings.input_size}
    if "weights" in options:
        options["weights"] = None  # speed and energy do not depend on the values; GPU boxes cannot download
    return base.replace(
        name=f"gpu_check-{model}-{precision}-{data_on_device}",
        model_options=options,
        batch_size=settings.batch_size,
        precision=precision,
        jit="auto",
        data_on_device=data_on_device,
        run_eagerly=False,
    )


def synthetic_pool(settings: Settings):
    """batch_size x epoch_steps random cache-sized uint8 images and 0/1 labels (values do not change speed)."""
    import numpy as np

    from data.cache import DEFAULT_IMAGE_SIZE

    count = settings.batch_size * settings.epoch_steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3), dtype=np.uint8)
    return images, (np.arange(count) % 2).astype(np.int32)


class Trainer:
    """A worker's trial model, compiled, and its batches: the trial's own code throughout."""

    def __init__(self, job: Job, settings: Settings):
        import keras

        from bench.trial.execution import resolve_data_on_device, resolve_precision
        from bench.trial.fit import build_device_trainer, build_trial_model
        from bench.trial.flops import flops_or_nan, training_flops
        from data.device import IndexBatches
        from data.loader import ArrayBatches
        from data.transforms import NORMALISATIONS

        started = time.perf_counter()
        self.precision = resolve_precision(job.precision)
        images, labels = synthetic_pool(settings)
        on_device = resolve_data_on_device(DATA_ON_DEVICE[job.data], images.nbytes)
        self.data = "device" if on_device == "on" else "stream"
        spec = trial_spec(job.model, settings, self.precision, on_device)
        keras.backend.clear_session()
        keras.utils.set_random_seed(spec.seed)
        stats = None
        if NORMALISATIONS[spec.normalisation].needs_statistics:
            pixels = images.reshape(-1, 3).astype("float64")
            stats = (pixels.mean(axis=0).tolist(), pixels.std(axis=0).tolist())
        self.model, network = build_trial_model(spec, stats, 2, self.precision)
        self.flops_per_image = flops_or_nan(network)
        self.train_flops_per_image = flops_or_nan(network, training_flops)
        self.params = int(network.count_params())
        if on_device == "on":
            self.trainer = build_device_trainer(self.model, images, spec)
            batches = IndexBatches(labels, spec.batch_size, True, spec.seed)
        else:
            self.trainer = self.model
            batches = ArrayBatches(images, labels, spec.batch_size, True, spec.seed)
        self.batch_size = spec.batch_size
        self.epoch_steps = len(batches)
        self.batches = batches
        self.build_s = time.perf_counter() - started
        self.compile_s, _ = self.fit(steps=1)  # tracing and XLA's compile: the first step, timed apart
        self.second_step_s, _ = self.fit(steps=1)
        self.epoch_s: float | None = None

    def sync(self) -> int:
        """Steps trained so far, read back from the device: every step before has finished."""
        from keras import ops

        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def fit(self, epochs: int = 1, steps: int | None = None) -> tuple[float, int]:
        """(seconds, steps) of ``fit`` as a trial calls it, to the last step's end."""
        from data.fit_input import FitInput

        before = self.sync()
        started = time.perf_counter()
        fit_input = FitInput(self.batches, epochs)  # every epoch's batches in one stream, as a trial's
        self.trainer.fit(
            fit_input.data,
            epochs=epochs,
            steps_per_epoch=steps or fit_input.steps_per_epoch,
            shuffle=False,  # the batches shuffle themselves, seeded, per epoch
            verbose=0,
        )
        done = self.sync()
        fit_input.close()
        return time.perf_counter() - started, done - before

    def warm(self) -> float:
        """One untimed epoch (the GPU's clocks up, the allocator settled); its seconds."""
        self.epoch_s, _ = self.fit(epochs=1)
        return self.epoch_s

    def timed(self, min_steps: int, min_seconds: float) -> dict:
        """Whole epochs for at least ``min_steps`` steps and (by the warm-up's pace) ``min_seconds``."""
        epoch_s = self.epoch_s or self.second_step_s * self.epoch_steps
        epochs = max(1, math.ceil(min_steps / self.epoch_steps), math.ceil(min_seconds / max(epoch_s, 1e-6)))
        seconds, steps = self.fit(epochs=min(epochs, 100_000))
        return {"steps": steps, "images": steps * self.batch_size, "seconds": seconds}

    def info(self) -> dict:
        return {
            "precision": self.precision,
            "data": self.data,
            "flops_per_image": self.flops_per_image,
            "train_flops_per_image": self.train_flops_per_image,
            "params": self.params,
            "batch_size": self.batch_size,
            "build_s": self.build_s,
            "compile_s": self.compile_s,
            "second_step_s": self.second_step_s,
            "epoch_steps": self.epoch_steps,
        }


def peak_device_memory() -> int | None:
    """This process's peak device memory where the backend tells it (JAX on a GPU), else None."""
    if os.environ.get("KERAS_BACKEND") != "jax":
        return None
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # a backend without memory statistics
        return None
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else int(peak)


def _worker_main(connection, job: Job, settings: Settings, log_path: str) -> None:
    """A worker process: build and compile, say so, then warm up and time runs as told."""
    with open(log_path, "ab", buffering=0) as log:  # the frameworks' chatter stays out of the table
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        set_environment(settings.backend)
        from bench.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        trainer = Trainer(job, settings)
        connection.send(("compiled", trainer.info()))
        while True:
            command, *arguments = connection.recv()
            if command == "warm":
                connection.send(("warmed", trainer.warm()))
            elif command == "go":
                connection.send(("done", {**trainer.timed(*arguments), "peak_memory_bytes": peak_device_memory()}))
            else:
                return
    except (EOFError, KeyboardInterrupt):  # the parent went away
        return
    except BaseException as error:  # noqa: BLE001  (the parent reports it in the row)
        traceback.print_exc()
        first_line = str(error).splitlines()[0] if str(error) else ""
        with contextlib.suppress(Exception):  # the parent went away too
            connection.send(("error", f"{type(error).__name__}: {first_line}"))


class Worker:
    def __init__(self, context, job: Job, settings: Settings, log_dir: Path):
        self.job = job
        self.connection, self._child = context.Pipe()
        self.log_path = log_dir / f"{job.key}.log"
        self.process = context.Process(
            target=_worker_main, args=(self._child, job, settings, str(self.log_path)), name=job.key, daemon=True
        )
        self.state = "waiting"  # waiting, compiling, ready, failed, stopped
        self.info: dict = {}
        self.error: str | None = None
        self.started_at: float | None = None

    def start(self) -> None:
        self.process.start()
        self._child.close()  # the worker's end lives in the worker: its exit reads as end-of-file here
        self.state, self.started_at = "compiling", elapsed()

    def receive(self, expected: str, timeout: float | None = None):
        """The worker's answer; RuntimeError with its message when it failed or died."""
        if timeout is not None and not self.connection.poll(max(timeout, 0.0)):
            raise RuntimeError(f"no answer within {timeout:.0f} s")
        try:
            kind, payload = self.connection.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"worker ended (exit code {self.process.exitcode}); log {self.log_path}") from None
        if kind == "error":
            raise RuntimeError(payload)
        if kind != expected:
            raise RuntimeError(f"worker answered {kind!r}, expected {expected!r}")
        return payload

    def stop(self) -> None:
        if self.state == "ready" and self.process.is_alive():  # idle: it ends itself
            with contextlib.suppress(OSError, ValueError):
                self.connection.send(("stop",))
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
        if self.state != "failed":
            self.state = "stopped"

    def kill(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            self.process.kill()


# --- rows and the table ------------------------------------------------------------------


@dataclass
class Row:
    section: str  # alone, packed
    model: str
    precision: str
    data: str
    trainers: int
    input_size: int
    batch_size: int
    status: str = "not reached"  # measured, skipped, failed, not reached
    note: str = ""
    compile_s: float | None = None  # first step, compile included (packed: the slowest worker's)
    steps: int | None = None
    images: int | None = None
    seconds: float | None = None
    images_per_sec: float | None = None
    step_ms: float | None = None  # per trainer
    flops_per_image: float | None = None  # forward
    train_flops_per_image: float | None = None  # bench.trial.flops.training_flops
    train_tflops: float | None = None  # training FLOPs per image x img/s
    mfu_datasheet: float | None = None
    mfu_measured: float | None = None
    power_w: float | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    mj_per_image: float | None = None
    gpu_util: float | None = None
    peak_memory_bytes: int | None = None  # the trainers' own peaks, summed
    nvml_reason: str | None = None
    workers: list[str] = field(default_factory=list)


COLUMNS = (
    ("model", lambda r: r.model),
    ("precision", lambda r: r.precision),
    ("data", lambda r: r.data),
    ("trainers", lambda r: str(r.trainers)),
    ("batch", lambda r: str(r.batch_size)),
    ("input", lambda r: str(r.input_size)),
    ("compile s", lambda r: _number(r.compile_s, 1)),
    ("train img/s", lambda r: _number(r.images_per_sec, 1)),
    ("step ms", lambda r: _number(r.step_ms, 2)),
    ("fwd GFLOP/img", lambda r: _number(None if r.flops_per_image is None else r.flops_per_image / 1e9, 3)),
    ("train TFLOP/s", lambda r: _number(r.train_tflops, 2)),
    ("MFU % datasheet", lambda r: _number(None if r.mfu_datasheet is None else 100 * r.mfu_datasheet, 2)),
    ("MFU % measured", lambda r: _number(None if r.mfu_measured is None else 100 * r.mfu_measured, 2)),
    ("power W", lambda r: _number(r.power_w, 0)),
    ("mJ/img", lambda r: _number(r.mj_per_image, 2)),
    ("GPU util %", lambda r: _number(r.gpu_util, 0)),
    ("mem GiB", lambda r: _number(None if r.peak_memory_bytes is None else r.peak_memory_bytes / 2**30, 2)),
    ("status", lambda r: r.status + (f": {r.note}" if r.note else "")),
)


def _number(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def format_table(rows: list[Row]) -> str:
    """A GitHub-markdown table of every row, measured or not."""
    cells = [[header for header, _ in COLUMNS]] + [[cell(row) for _, cell in COLUMNS] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(COLUMNS))]

    def line(values):
        return "| " + " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)) + " |"

    return "\n".join(
        [line(cells[0]), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, cells[1:])]
    )


@dataclass
class Peaks:
    """Each row's two peaks, by the precision it ran in: the first GPU's dense datasheet peak
    (bench.trial.mfu.device_peak) and a matrix-product peak measured here in that precision.
    Each maps precision -> {"flops", "source"}, or {"reason"} where there is none."""

    datasheet: dict[str, dict] = field(default_factory=dict)
    datasheet_reason: str | None = "not looked up before the deadline"
    measured: dict[str, dict] = field(default_factory=dict)
    device: str = ""

    def flops(self, kind: str, precision: str) -> float | None:
        return getattr(self, kind).get(precision, {}).get("flops")

    def describe(self, kind: str) -> str:
        peaks = getattr(self, kind)
        if not peaks:
            return f"n/a ({self.datasheet_reason if kind == 'datasheet' else 'not measured before the deadline'})"
        return "; ".join(f"{precision} {_peak(**peak)}" for precision, peak in peaks.items())


MATMUL_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def measure_matmul_peak(size: int, repeats: int, precision: str = "bf16", rounds: int = 5) -> float:
    """Best matrix-product FLOP/s on Keras's device in ``precision``: ``repeats`` products of two
    ``size`` x ``size`` matrices per round, the fastest of ``rounds`` after two warm-up rounds."""
    import keras
    from keras import ops

    a = ops.cast(keras.random.normal((size, size), seed=1), MATMUL_DTYPES[precision])
    b = ops.cast(keras.random.normal((size, size), seed=2), MATMUL_DTYPES[precision])

    def finish(x) -> None:
        if hasattr(x, "block_until_ready"):  # JAX: wait for the device, copy nothing back
            x.block_until_ready()
        else:
            ops.convert_to_numpy(x[:1, :1])

    best = math.inf
    for round_ in range(rounds + 2):
        started = time.perf_counter()
        for _ in range(repeats):
            product = ops.matmul(a, b)
        finish(product)
        if round_ >= 2:
            best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 * repeats / best


def measured_precisions(settings: Settings) -> list[str]:
    """The precisions the rows may run in: the ones asked for, both of ``auto``'s where packing asks it."""
    asked = {*settings.precisions, settings.pack_precision}
    if "auto" in asked:
        asked |= {"fp32", "bf16"}
    return [precision for precision in RESOLVED_PRECISIONS if precision in asked]


def find_peaks(settings: Settings) -> Peaks:
    """The first visible GPU's dense datasheet peak in each precision, and a matmul peak measured in each row's."""
    from bench.trial.gpu import driver_facts
    from bench.trial.mfu import device_peak

    facts, reason = driver_facts()
    peaks = Peaks(datasheet_reason=None)
    names = facts.get("gpus") or []
    if names:
        peaks.device = names[0]
        for precision in RESOLVED_PRECISIONS:
            peak, why = device_peak(names[0], precision)
            peaks.datasheet[precision] = {"flops": peak.flops, "source": peak.source} if peak else {"reason": why}
    else:
        peaks.datasheet_reason = f"no GPU, so no datasheet peak ({reason})"
    size, repeats = settings.matmul_size, settings.matmul_repeats
    for precision in measured_precisions(settings):
        try:
            flops = measure_matmul_peak(size, repeats, precision)
            source = f"keras.ops.matmul {size}x{size}, best of 5 rounds of {repeats}"
            peaks.measured[precision] = {"flops": flops, "source": source}
        except Exception as error:  # a backend without products in this precision on this device
            peaks.measured[precision] = {"reason": f"not measured: {type(error).__name__}: {error}"}
    return peaks


# --- the run -----------------------------------------------------------------------------


class Run:
    """Plans the rows and workers, compiles in parallel, times one row at a time, prints the table."""

    def __init__(self, settings: Settings, json_path: Path | None, log_dir: Path, argv: list[str]):
        self.settings = settings
        self.json_path = json_path
        self.log_dir = log_dir
        self.argv = argv
        self.peaks = Peaks()
        self.lock = threading.Lock()
        self.finished = False
        self.manifest: dict = {}
        context = multiprocessing.get_context("spawn")  # a fresh backend per process, as Ray's workers
        self.rows: list[Row] = []
        self.workers: list[Worker] = []
        self.row_workers: list[list[Worker]] = []
        s = settings
        for number, model in enumerate(s.models):
            thin = s.thin and number > 0
            for precision in s.precisions[-1:] if thin else s.precisions:
                for data in s.data[-1:] if thin else s.data:
                    worker = Worker(context, Job(f"{model}-{precision}-{data}", model, precision, data), s, log_dir)
                    self.workers.append(worker)
                    self.rows.append(Row("alone", model, precision, data, 1, s.input_size, s.batch_size))
                    self.row_workers.append([worker])
        packers = [
            Worker(context, Job(f"pack{index}-{s.pack_model}", s.pack_model, s.pack_precision, s.pack_data), s, log_dir)
            for index in range(max(s.pack, default=0))
        ]
        self.workers += packers
        for count in s.pack:
            self.rows.append(
                Row("packed", s.pack_model, s.pack_precision, s.pack_data, count, s.input_size, s.batch_size)
            )
            self.row_workers.append(packers[:count])

    # the phases ------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        watchdog = threading.Timer(max(0.0, s.deadline - elapsed()), self.on_deadline)
        watchdog.daemon = True
        watchdog.start()
        try:
            progress(
                f"{len(self.rows)} rows, {len(self.workers)} workers ({s.backend} backend), deadline {s.deadline:.0f} s; "
                f"worker logs in {self.log_dir}"
            )
            self.compile_all()
            self.peaks = find_peaks(s)
            progress(
                f"matmul peaks measured: {self.peaks.describe('measured')}; "
                f"datasheet: {self.peaks.describe('datasheet')}"
            )
            for index, row in enumerate(self.rows):
                self.measure_row(index, row)
                if row.section == "alone":
                    for worker in self.row_workers[index]:
                        worker.stop()  # its device memory back before the next rows
        finally:
            for worker in self.workers:
                worker.stop()
        watchdog.cancel()
        self.report(cut=False)
        return 0

    def prepare(self) -> None:
        """The models known (else SystemExit 2) and the run's manifest (TensorFlow's start-up notes dropped)."""
        with filtered_stderr():
            import models

            self.check_models(models)
            try:
                from bench.trial.env import collect_manifest

                self.manifest = collect_manifest(seeds=[0], argv=["benchmarks/gpu_check.py", *self.argv]).to_dict()
            except Exception as error:  # the figures matter more than the manifest
                self.manifest = {"error": f"{type(error).__name__}: {error}"}

    def check_models(self, models) -> None:
        s = self.settings
        unknown = sorted({name for name in (*s.models, s.pack_model) if not models.is_registered(name)})
        if unknown:
            for worker in self.workers:
                worker.kill()
            print(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(models.list_models())})", file=sys.stderr)
            raise SystemExit(2)

    def compile_all(self) -> None:
        """Start the workers (the longest compile first, ``jobs`` at once) and wait until each has
        compiled, or until only the timing phase's time is left: those still compiling are stopped."""
        s = self.settings
        # the longest compile first (the shortest total time where there are fewer slots than workers)
        waiting = sorted(self.workers, key=lambda w: -COMPILE_GUESS_S.get(w.job.model, 60.0))
        # the timing phase's share of the deadline: a few seconds per row, at most half of it
        timing_reserve = min(len(self.rows) * (s.min_seconds + 2.0) + 15.0, s.deadline / 2)
        cutoff = s.deadline - timing_reserve
        prepared = False
        while True:
            compiling = [w for w in self.workers if w.state == "compiling"]
            while waiting and len(compiling) < s.jobs:
                worker = waiting.pop(0)
                worker.start()
                compiling.append(worker)
            if not compiling:
                break
            if elapsed() >= cutoff:
                for worker in compiling + waiting:
                    worker.stop()
                    worker.state, worker.error = "failed", f"not compiled by {cutoff:.0f} s (the timing phase's share)"
                    progress(f"{worker.job.key}: stopped, {worker.error}")
                break
            if not prepared:
                prepared = True
                self.prepare()  # while the first workers compile
            timeout = max(0.05, min(1.0, cutoff - elapsed()))
            ready = wait_for_connections([w.connection for w in compiling], timeout=timeout)
            for worker in compiling:
                if worker.connection in ready or not worker.process.is_alive():
                    try:
                        worker.info = worker.receive("compiled", timeout=1.0)
                        worker.state = "ready"
                        info = worker.info
                        progress(
                            f"{worker.job.key}: compiled ({info['precision']}, data {info['data']}): first step "
                            f"{info['compile_s']:.1f} s, second {info['second_step_s'] * 1000:.0f} ms, "
                            f"build {info['build_s']:.1f} s"
                        )
                    except RuntimeError as error:
                        worker.state, worker.error = "failed", str(error)
                        progress(f"{worker.job.key}: FAILED {error}")
                        worker.stop()

    def measure_row(self, index: int, row: Row) -> None:
        s = self.settings
        workers = self.row_workers[index]
        label = f"{row.model} {row.precision} {row.data} x{row.trainers}"
        failed = [w for w in workers if w.state != "ready"]
        first = workers[0].info if workers and workers[0].info else {}
        row.precision, row.data = first.get("precision", row.precision), first.get("data", row.data)
        row.flops_per_image = first.get("flops_per_image")
        row.train_flops_per_image = first.get("train_flops_per_image")
        if any(w.info for w in workers):
            row.compile_s = max(w.info["compile_s"] for w in workers if w.info)
        if failed:
            row.status, row.note = "failed", "; ".join(sorted({w.error or w.state for w in failed}))
            return
        epoch_s = max(w.info["second_step_s"] * w.info["epoch_steps"] for w in workers)
        needed = 2 * epoch_s * row.trainers + s.min_seconds + 2.0
        if elapsed() + needed > s.deadline:
            row.status, row.note = "skipped", f"needs ~{needed:.0f} s, {s.deadline - elapsed():.0f} s left"
            progress(f"{label}: skipped ({row.note})")
            return
        from bench.trial.gpu import NvmlSampler

        try:
            for worker in workers:
                worker.connection.send(("warm",))
            for worker in workers:
                worker.receive("warmed")
            with NvmlSampler(interval_s=0.1, shared=row.trainers > 1) as sampler:
                for worker in workers:
                    worker.connection.send(("go", s.steps, s.min_seconds))
                results = [worker.receive("done") for worker in workers]
        except RuntimeError as error:
            row.status, row.note = "failed", str(error)
            progress(f"{label}: FAILED {error}")
            for worker in workers:
                worker.state, worker.error = "failed", str(error)
                worker.stop()
            return
        self.fill(row, results, sampler.record)
        progress(
            f"{label}: {row.images_per_sec:.1f} img/s over {row.steps} steps in {row.seconds:.2f} s; "
            f"{_number(row.mj_per_image, 2)} mJ/img"
        )

    def fill(self, row: Row, results: list[dict], reading) -> None:
        from bench.trial.mfu import model_flops_utilisation

        row.images = sum(r["images"] for r in results)
        row.steps = sum(r["steps"] for r in results)
        row.seconds = max(r["seconds"] for r in results)  # trainers side by side: the longest window
        row.images_per_sec = row.images / row.seconds
        row.step_ms = 1000 * row.seconds * row.trainers / row.steps
        peaks = [r["peak_memory_bytes"] for r in results]
        row.peak_memory_bytes = None if None in peaks else sum(peaks)
        flops = row.train_flops_per_image
        if flops is not None and math.isfinite(flops):
            row.train_tflops = flops * row.images_per_sec / 1e12
        # each row against the peaks of the precision it ran in
        for kind in ("datasheet", "measured"):
            peak = self.peaks.flops(kind, row.precision)
            setattr(row, f"mfu_{kind}", model_flops_utilisation(flops, row.images_per_sec, peak))
        row.power_w, row.gpu_util = reading.power_w_mean, reading.gpu_util_mean
        row.energy_j, row.energy_source = reading.energy_j, reading.energy_source
        row.mj_per_image = None if reading.energy_j is None else 1000 * reading.energy_j / row.images
        row.nvml_reason = reading.reason
        row.status = "measured"

    # the table -------------------------------------------------------------------------
    def on_deadline(self) -> None:
        """The watchdog: the table as it stands, the workers ended, the process with them."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            progress(f"deadline of {self.settings.deadline:.0f} s reached: the table as measured so far")
            for worker in self.workers:
                worker.kill()
            stage = {"waiting": "not started", "compiling": "still compiling", "ready": "compiled, not timed"}
            for row, workers in zip(self.rows, self.row_workers, strict=True):
                if row.status == "not reached":
                    row.note = f"deadline ({', '.join(sorted({stage.get(w.state, w.state) for w in workers}))})"
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
        peaks = self.peaks
        versions = ", ".join(
            f"{name} {self.manifest[key]}"
            for name, key in (("Keras", "keras"), ("JAX", "jax"))
            if self.manifest.get(key)
        )
        print()
        print(
            f"GPU check{' (DRY: CPU-sized run)' if s.dry else ''}: {peaks.device or 'no GPU'}, Keras on {s.backend}"
            f"{f' ({versions})' if versions else ''}; {elapsed():.0f} s of a {s.deadline:.0f} s deadline"
            f"{' (cut short)' if cut else ''}"
        )
        print(
            "MFU = training FLOPs/img (bench.trial.flops.training_flops) x img/s over the peak of the row's "
            f"precision: datasheet {peaks.describe('datasheet')}; measured {peaks.describe('measured')}"
        )
        print(
            f"Timed: >= {s.steps} steps and >= {s.min_seconds:g} s of whole {s.epoch_steps}-step epochs after one "
            "warm-up epoch; compile s = the first step (workers compiling side by side); energy = NVML counter "
            "delta over the timed window (whole GPU); mem = the trainers' own peak device memory (XLA)"
        )
        print()
        print(format_table(self.rows))
        reasons = sorted({row.nvml_reason for row in self.rows if row.nvml_reason})
        if reasons:
            print(f"\nGPU figures n/a: {'; '.join(reasons)}")
        if self.json_path is not None:
            self.json_path.write_text(
                json.dumps(
                    {
                        "settings": asdict(s),
                        "peaks": asdict(peaks),
                        "cut_by_deadline": cut,
                        "elapsed_s": elapsed(),
                        "manifest": self.manifest,
                        "rows": [asdict(row) for row in self.rows],
                    },
                    indent=1,
                )
                + "\n"
            )
            print(f"\nFigures: {self.json_path}")
        sys.stdout.flush()


def _peak(flops: float | None = None, source: str | None = None, reason: str | None = None) -> str:
    return f"{flops / 1e12:.1f} TFLOP/s ({source})" if flops else f"n/a ({reason})"


def parse_settings(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU-sized run (also DRY=1 in the environment)")
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), help="Keras backend (default: see above)")
    parser.add_argument("--models", nargs="+", help="models timed alone (GPU: the four report models)")
    parser.add_argument("--precisions", nargs="+", choices=RESOLVED_PRECISIONS, help="default: fp32 bf16")
    parser.add_argument("--data", nargs="+", choices=DATA_PATHS, help="default: stream device")
    parser.add_argument("--pack", nargs="*", type=int, help="trainers packed on the GPU at once (GPU: 1 2 4)")
    parser.add_argument("--pack-model", help=f"the packed trainers' model (default {PACKED_MODEL})")
    parser.add_argument("--pack-precision", choices=("auto", *RESOLVED_PRECISIONS), help="default: auto, as a trial")
    parser.add_argument("--pack-data", choices=("auto", *DATA_PATHS), help="default: auto, as a trial")
    parser.add_argument("--input-size", type=int, help="model input side (GPU: the report's 227)")
    parser.add_argument("--batch-size", type=int, help="GPU: 32")
    parser.add_argument("--epoch-steps", type=int, help="steps per epoch, the image pool's size (GPU: 32)")
    parser.add_argument("--steps", type=int, help="timed steps, at least (GPU: 30)")
    parser.add_argument("--min-seconds", type=float, help="timed seconds, at least (GPU: 3)")
    parser.add_argument("--matmul-size", type=int, help="side of the matrices of the measured peaks (GPU: 8192)")
    parser.add_argument("--matmul-repeats", type=int, help="products per timed round (GPU: 20)")
    parser.add_argument("--deadline", type=float, help="seconds from the start to the table, at most (GPU: 420)")
    parser.add_argument("--jobs", type=int, help="workers compiling at once (GPU: all; DRY: 3)")
    parser.add_argument(
        "--thin",
        action=argparse.BooleanOptionalAction,
        help="models after the first in one row only, the last precision and data (DRY: on; GPU: off)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--log-dir", type=Path, help="the workers' logs (default: a temporary folder)")
    args = parser.parse_args(argv)
    dry = args.dry or os.environ.get("DRY", "") not in ("", "0")
    values = dict(DRY_DEFAULTS if dry else GPU_DEFAULTS)
    for name in values:
        given = getattr(args, name)
        if given is not None:
            values[name] = tuple(given) if isinstance(given, list) else given
    if not values["jobs"]:  # every worker at once (20 on the GPU machine's 16 cores)
        values["jobs"] = 1_000
    if any(count < 1 for count in values["pack"]):
        parser.error("--pack counts must be >= 1")
    for name in ("input_size", "batch_size", "epoch_steps", "steps", "matmul_size", "matmul_repeats", "jobs"):
        if values[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return Settings(**values, dry=dry, backend=choose_backend(args.backend)), args


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_settings(argv)
    set_environment(settings.backend)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    run = Run(settings, args.json, log_dir, list(sys.argv[1:] if argv is None else argv))
    return run.run()


if __name__ == "__main__":
    sys.exit(main())
