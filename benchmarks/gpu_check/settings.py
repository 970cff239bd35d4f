"""The check's settings: the planned rows, GPU and DRY defaults, flags, backend and environment.

Imports no Keras (the tests read the plan without a backend).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from dataclasses import dataclass

from bench.choices import PRECISIONS

STARTED = time.monotonic()
REPORT_MODELS = ("levi_hassner", "mobilenet_v3_large", "resnet50_v2", "efficientnet_v2_m")
DATA_PLACEMENTS = ("device", "stream")  # images held on the device / batches from host memory every step
DATA_ON_DEVICE = {"device": "on", "stream": "off", "auto": "auto"}  # TrialSpec.data_on_device
SUITES = ("baseline", "transfer")  # where the report's row (optimiser, options) for each model comes from
GPU_ENVIRONMENT = {
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # packed trainers share the GPU
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
# guessed seconds of XLA's compile of each model's train step on a GPU (not measured there yet); a
# row's first epoch also compiles its validation and inference steps, and its process starts
COMPILE_GUESS_S = {"levi_hassner": 15.0, "mobilenet_v3_large": 45.0, "resnet50_v2": 45.0, "efficientnet_v2_m": 120.0}
DEFAULT_COMPILE_GUESS_S = 60.0
FIRST_EPOCH_PER_COMPILE = 1.3  # first epoch / train-step compile before any row is measured
START_S = 10.0  # a worker's process start, imports, data and model build


@dataclass(frozen=True)
class RowPlan:
    """One table row: ``trainers`` trials of one configuration at once (one process each)."""

    model: str
    precision: str  # fp32, bf16, fp16, auto (resolved by the trial)
    data: str  # device, stream, auto
    trainers: int = 1

    @property
    def label(self) -> str:
        return f"{self.model} {self.precision} {self.data}" + (f" x{self.trainers}" if self.trainers > 1 else "")

    @classmethod
    def parse(cls, text: str) -> RowPlan:
        """``MODEL:PRECISION:DATA[:TRAINERS]``, e.g. ``resnet50_v2:bf16:device`` or ``levi_hassner:bf16:device:4``."""
        parts = text.split(":")
        if len(parts) not in (3, 4):
            raise argparse.ArgumentTypeError(f"{text!r}: expected MODEL:PRECISION:DATA[:TRAINERS]")
        model, precision, data = parts[:3]
        if precision not in PRECISIONS:
            raise argparse.ArgumentTypeError(f"{text!r}: precision is one of {', '.join(PRECISIONS)}")
        if data not in ("auto", *DATA_PLACEMENTS):
            raise argparse.ArgumentTypeError(f"{text!r}: data is one of auto, {', '.join(DATA_PLACEMENTS)}")
        trainers = int(parts[3]) if len(parts) == 4 else 1
        if trainers < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: trainers must be >= 1")
        return cls(model, precision, data, trainers)


# the GPU's rows, most wanted first: a row that no longer fits before the deadline is skipped
GPU_ROWS = (
    RowPlan("levi_hassner", "bf16", "device"),
    RowPlan("mobilenet_v3_large", "bf16", "device"),
    RowPlan("resnet50_v2", "bf16", "device"),
    RowPlan("efficientnet_v2_m", "bf16", "device"),
    RowPlan("levi_hassner", "bf16", "device", 2),  # packed as Ray packs fractional-GPU trials; x1 is row 1
    RowPlan("levi_hassner", "bf16", "device", 4),
    RowPlan("levi_hassner", "fp32", "device"),  # against row 1: bf16's gain
    RowPlan("levi_hassner", "bf16", "stream"),  # against row 1: the on-device data's gain
)
DRY_ROWS = (
    RowPlan("levi_hassner", "bf16", "device"),
    RowPlan("levi_hassner", "fp32", "stream"),
    RowPlan("levi_hassner", "bf16", "device", 2),
)


@dataclass(frozen=True)
class Settings:
    """How big and how long: the GPU's defaults or DRY's, each overridden by its flag."""

    rows: tuple[RowPlan, ...]
    input_size: int  # the model's input side (the report's 227 crop of the cache's 256 px images)
    batch_size: int
    train_images: int  # per epoch (the trial's train_limit)
    val_images: int  # per epoch (val_limit)
    epochs: int  # the first (compile, start-up) and the steady ones after it
    matmul_size: int
    matmul_repeats: int
    deadline: float  # seconds after the start when the table is printed, whatever was measured
    dry: bool
    backend: str

    @property
    def steady_epochs(self) -> int:
        return self.epochs - 1


# The sizes of a row, side by side: on a GPU (the report's input and batch, epochs of seconds)
# and in a dry run on a CPU (tiny, to prove the path).
SIZE_NAMES = ("input_size", "batch_size", "train_images", "val_images", "epochs", "matmul_size", "matmul_repeats")
GPU_SIZES = (227, 32, 768, 64, 4, 8192, 20)
DRY_SIZES = (64, 8, 24, 8, 3, 256, 4)
DEADLINE_S = 230.0
GPU_DEFAULTS = {"rows": GPU_ROWS, "deadline": DEADLINE_S, **dict(zip(SIZE_NAMES, GPU_SIZES, strict=True))}
DRY_DEFAULTS = {"rows": DRY_ROWS, "deadline": DEADLINE_S, **dict(zip(SIZE_NAMES, DRY_SIZES, strict=True))}


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


def set_environment(backend: str, compile_cache: str | None = None) -> None:
    """Before Keras is imported (here and, inherited, in the workers). ``compile_cache``: JAX's
    persistent compilation cache, so packed trainers reuse the compile of the same row alone."""
    os.environ["KERAS_BACKEND"] = backend
    for key, value in GPU_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if compile_cache and backend == "jax":
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", compile_cache)


def parse_settings(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description="The report's training speeds.")
    parser.add_argument("--dry", action="store_true", help="CPU-sized run (also DRY=1 in the environment)")
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), help="default: $KERAS_BACKEND")
    parser.add_argument("--rows", nargs="+", type=RowPlan.parse, help="MODEL:PRECISION:DATA[:TRAINERS] ...")
    parser.add_argument("--input-size", type=int, help="model input side (GPU: 227)")
    parser.add_argument("--batch-size", type=int, help="GPU: 32")
    parser.add_argument("--train-images", type=int, help="training images per epoch (GPU: 768)")
    parser.add_argument("--val-images", type=int, help="validation images per epoch (GPU: 64)")
    parser.add_argument("--epochs", type=int, help="the first epoch and the steady ones (GPU: 4, DRY: 3)")
    parser.add_argument("--matmul-size", type=int, help="side of the matrices of the measured peak (GPU: 8192)")
    parser.add_argument("--matmul-repeats", type=int, help="products per timed round (GPU: 20)")
    parser.add_argument("--deadline", type=float, help="seconds from the start to the table, at most (230)")
    parser.add_argument("--json", type=os.path.abspath, help="also write the figures here")
    parser.add_argument("--log-dir", type=os.path.abspath, help="the workers' logs (default: a temporary folder)")
    args = parser.parse_args(argv)
    dry = args.dry or os.environ.get("DRY", "") not in ("", "0")
    values = dict(DRY_DEFAULTS if dry else GPU_DEFAULTS)
    for name in values:
        given = getattr(args, name)
        if given is not None:
            values[name] = tuple(given) if isinstance(given, list) else given
    for name in ("input_size", "batch_size", "train_images", "val_images", "matmul_size", "matmul_repeats"):
        if values[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if values["epochs"] < 2:
        parser.error("--epochs must be >= 2: the first holds the compile, the steady figures come after it")
    return Settings(**values, dry=dry, backend=choose_backend(args.backend)), args
