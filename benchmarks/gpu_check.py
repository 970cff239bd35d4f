"""GPU check, prepared for a GPU machine: train img/s and energy per image at the report's sizes, and packing.

1. Every transfer model (MobileNetV3Large, ResNet50V2, EfficientNetV2M) and Levi & Hassner,
   at the report's 227 crop and batch 32: the trial's own train step (uint8 cache-sized
   batches, report policy and normalisation on the device, the suite's optimiser), timed
   after warm-up; train img/s, mean power and NVML energy per image.
2. Packing: 1, 2 and 4 Levi & Hassner trainers at once on one GPU (separate processes, as
   Ray packs fractional-GPU trials): summed img/s and energy per image.

Keras runs on the JAX backend where TensorFlow is not installed (``KERAS_BACKEND`` set
before Keras is imported; ``--backend`` overrides). JAX preallocation and TensorFlow's
whole-GPU reservation are turned off, or packed processes could not share the GPU.
Weights are random (``weights=None``): speed and energy do not depend on their values, and
GPU boxes often cannot download ImageNet weights.

    python benchmarks/gpu_check.py [--json gpu_check.json] [--steps 50] [--pack 1 2 4]

Needs keras, jax[cuda] (or tensorflow), numpy, pandas, pillow, nvidia-ml-py and this
repository (``pip install -e . --no-deps`` or PYTHONPATH=.). Without a GPU it still runs
(GPU fields read n/a with the reason), which is how its plumbing is tested on a CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds data/, models/, bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPORT_MODELS = ("levi_hassner", "mobilenet_v3_large", "resnet50_v2", "efficientnet_v2_m")
PACKED_MODEL = "levi_hassner"
GPU_ENVIRONMENT = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def choose_backend(requested: str | None) -> str:
    """``requested``, else $KERAS_BACKEND, else tensorflow where it is installed, else jax."""
    if requested:
        return requested
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    return "tensorflow" if importlib.util.find_spec("tensorflow") else "jax"


def set_environment(backend: str) -> None:
    """Before Keras is imported (in this process and, inherited, in the packing workers)."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for key, value in GPU_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class Measurement:
    model: str
    trainers: int  # processes training at once on the GPU (1: alone)
    input_size: int
    batch_size: int
    images: int
    seconds: float
    images_per_sec: float
    power_w: float | None
    energy_j: float | None
    energy_source: str | None
    mj_per_image: float | None
    gpu_util: float | None
    gpu_memory_bytes: int | None
    gpu_names: str
    nvml_reason: str | None


def trial_spec(model: str, input_size: int, batch_size: int):
    """The suites' settings for ``model``: Adam for the transfer rows, SGD with momentum for the CNN."""
    import models
    from bench.specs import TrialSpec

    transfer = model in ("mobilenet_v3_large", "resnet50_v2", "efficientnet_v2_m")
    options = {"input_size": input_size, **({"weights": None} if transfer else {})}
    return TrialSpec(
        name=f"gpu_check-{model}",
        model=model,
        model_options=options,
        normalisation=models.get_model_entry(model).normalisation,
        optimizer="adam" if transfer else "sgd",
        learning_rate=5e-5 if transfer else 1e-3,
        momentum=0.0 if transfer else 0.9,
        batch_size=batch_size,
    )


class Trainer:
    """A trial's compiled training model and a few cache-shaped uint8 batches held in memory."""

    def __init__(self, model: str, input_size: int, batch_size: int, warmup: int):
        import keras
        import numpy as np

        from bench.trial import build_trial_model
        from data.cache import DEFAULT_IMAGE_SIZE

        keras.utils.set_random_seed(0)
        self.batch_size = batch_size
        self.model, _network = build_trial_model(trial_spec(model, input_size, batch_size))
        rng = np.random.default_rng(0)
        shape = (batch_size, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3)
        self.batches = [
            (rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 2, batch_size).astype("int32"))
            for _ in range(4)
        ]
        for step in range(warmup):  # compilation and the allocator's first steps, never timed
            self.step(step)

    def step(self, index: int) -> None:
        # train_on_batch returns host values: the step has finished when it returns
        self.model.train_on_batch(*self.batches[index % len(self.batches)])

    def run(self, steps: int, min_seconds: float) -> tuple[int, float]:
        """(images, seconds) of at least ``steps`` steps and ``min_seconds``."""
        started = time.perf_counter()
        done = 0
        while done < steps or time.perf_counter() - started < min_seconds:
            self.step(done)
            done += 1
        return done * self.batch_size, time.perf_counter() - started


def _measurement(model: str, trainers: int, args, images: int, seconds: float, reading) -> Measurement:
    energy = reading.energy_j
    return Measurement(
        model=model,
        trainers=trainers,
        input_size=args.input_size,
        batch_size=args.batch_size,
        images=images,
        seconds=seconds,
        images_per_sec=images / seconds,
        power_w=reading.power_w_mean,
        energy_j=energy,
        energy_source=reading.energy_source,
        mj_per_image=None if energy is None else 1000 * energy / images,
        gpu_util=reading.gpu_util_mean,
        gpu_memory_bytes=reading.memory_used_bytes_max,
        gpu_names=", ".join(reading.gpu_names),
        nvml_reason=reading.reason,
    )


def measure_alone(model: str, args) -> Measurement:
    import keras

    from bench.gpu import NvmlSampler

    keras.backend.clear_session()
    trainer = Trainer(model, args.input_size, args.batch_size, args.warmup)
    with NvmlSampler() as sampler:
        images, seconds = trainer.run(args.steps, args.min_seconds)
    del trainer
    keras.backend.clear_session()
    return _measurement(model, 1, args, images, seconds, sampler.record)


def _packed_worker(model, input_size, batch_size, warmup, steps, min_seconds, barrier, results) -> None:
    trainer = Trainer(model, input_size, batch_size, warmup)
    barrier.wait()  # every trainer compiled: the timed window starts together
    results.put(trainer.run(steps, min_seconds))


def measure_packed(trainers: int, args) -> Measurement:
    """``trainers`` processes training ``PACKED_MODEL`` at once; img/s summed over them."""
    from bench.gpu import NvmlSampler

    context = multiprocessing.get_context("spawn")  # a fresh backend per process, as Ray's workers
    barrier = context.Barrier(trainers + 1)
    results = context.Queue()
    workers = [
        context.Process(
            target=_packed_worker,
            args=(PACKED_MODEL, args.input_size, args.batch_size, args.warmup, args.steps, args.min_seconds),
            kwargs={"barrier": barrier, "results": results},
        )
        for _ in range(trainers)
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=args.compile_timeout)
    with NvmlSampler(shared=trainers > 1) as sampler:
        done = [results.get(timeout=args.compile_timeout + 10 * args.min_seconds) for _ in workers]
    for worker in workers:
        worker.join()
    images = sum(count for count, _seconds in done)
    # the summed rate of trainers that ran side by side, over the longest one's window
    seconds = max(seconds for _count, seconds in done)
    return _measurement(PACKED_MODEL, trainers, args, images, seconds, sampler.record)


def _table(rows: list[Measurement]) -> str:
    from tabulate import tabulate

    def number(value, digits=1):
        return "n/a" if value is None else f"{value:.{digits}f}"

    return tabulate(
        [
            [
                row.model,
                row.trainers,
                f"{row.images_per_sec:.1f}",
                number(row.power_w),
                number(row.mj_per_image),
                number(row.gpu_util),
                number(None if row.gpu_memory_bytes is None else row.gpu_memory_bytes / 2**30, 2),
            ]
            for row in rows
        ],
        headers=["model", "trainers", "train img/s", "power W", "mJ/image", "GPU util %", "GPU memory GiB"],
        tablefmt="github",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), help="Keras backend (default: see above)")
    parser.add_argument("--models", nargs="+", default=list(REPORT_MODELS), help="models measured alone")
    parser.add_argument("--pack", nargs="*", type=int, default=[1, 2, 4], help="Levi & Hassner trainers per GPU")
    parser.add_argument("--input-size", type=int, default=227, help="model input side (default: the report's 227)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps, at least")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="timed seconds, at least")
    parser.add_argument("--compile-timeout", type=float, default=900.0, help="seconds a packed trainer may compile")
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where the figures are written")
    args = parser.parse_args(argv)
    if any(count < 1 for count in args.pack):
        parser.error("--pack counts must be >= 1")
    set_environment(choose_backend(args.backend))

    import keras

    import models
    from bench.env import collect_manifest

    unknown = [name for name in args.models if not models.is_registered(name)]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(models.list_models())})")
    manifest = collect_manifest(seeds=[0], argv=["benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"Keras {keras.__version__} on {keras.backend.backend()}; {manifest.device()}", flush=True)
    alone = []
    for model in args.models:
        alone.append(measure_alone(model, args))
        print(f"{model}: {alone[-1].images_per_sec:.1f} img/s", flush=True)
    packed = []
    for trainers in args.pack:
        packed.append(measure_packed(trainers, args))
        print(f"{PACKED_MODEL} x{trainers}: {packed[-1].images_per_sec:.1f} img/s together", flush=True)
    reasons = sorted({row.nvml_reason for row in alone + packed if row.nvml_reason})
    if reasons:
        print(f"\nGPU figures n/a: {'; '.join(reasons)}")
    print(f"\nAlone, input {args.input_size}, batch {args.batch_size}:\n" + _table(alone))
    print(f"\nPacked ({PACKED_MODEL}, trainers per GPU):\n" + _table(packed))
    args.json.write_text(
        json.dumps(
            {
                "manifest": manifest.to_dict(),
                "backend": keras.backend.backend(),
                "alone": [asdict(row) for row in alone],
                "packed": [asdict(row) for row in packed],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nFigures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
