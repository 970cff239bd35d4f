"""Per-model train img/s per Keras backend and precision, side by side in one run.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so each backend runs in a
subprocess of its own (one after the other, never together: on a CPU they would share its
cores). Inside, for each model and precision, the trial's own training step: the compiled
model ``bench.trial.fit.build_trial_model`` makes (256x256 uint8 in, the report policy's
augmentation and crop, resized to the network's input, SGD with momentum) behind the
trial's ``DeviceImages`` layer (``build_device_trainer``: the images on the device, ``fit``
given int32 positions, ``FitInput`` as a trial gives them), at a small CPU-friendly input.
Times, per model x backend x precision:

- build: making and compiling the Keras models (no step run yet);
- warm-up: the first ``fit`` of ``--warmup-steps`` steps (tracing, XLA compilation, first steps);
- train img/s: a later ``fit`` of as many steps as fill about ``--seconds`` (at least
  ``--min-steps``, sized from a two-step ``fit`` between them), batch x steps / its wall time.

    python -m benchmarks.backends [--models M ...] [--backends tensorflow jax] [--precisions fp32 bf16]
                                  [--input-size 64] [--batch-size 16] [--seconds 3] [--json PATH]

EfficientNetV2M is left out of the default models (the reason is printed): add it with
``--models ... efficientnet_v2_m``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds data/, models/, bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.choices import BACKENDS as KERAS_BACKENDS  # noqa: E402  (keras-free)
from bench.choices import RESOLVED_PRECISIONS  # noqa: E402

BACKENDS = ("tensorflow", "jax")
DEFAULT_PRECISIONS = RESOLVED_PRECISIONS[:2]  # fp32 and bf16; --precisions fp16 adds the third
DEFAULT_MODELS = ("levi_hassner", "mobilenet_v3_large", "resnet50_v2")
LEFT_OUT = {
    "efficientnet_v2_m": (
        "in fp32 alone it took 5 min 16 s on this 2-core CPU (2026-12-02, shared): warm-up 100 s on TensorFlow, "
        "build 37 s and warm-up 94 s on JAX, then 6.9 and 2.1 img/s; with bf16 as well, the run would take about "
        "15 minutes instead of 5"
    ),
}
DEVICE_IMAGES = 512  # faces of the synthetic data held on the device: positions of every batch fall among them
RESULT_PREFIX = "backends-result: "


@dataclass
class Measured:
    """One model x backend x precision: the trial's train step, timed."""

    model: str
    backend: str
    precision: str
    input_size: int
    batch_size: int
    params: int = 0
    jit: str = ""
    build_seconds: float = math.nan
    warmup_seconds: float = math.nan  # the first fit: tracing / compilation and the warm-up steps
    warmup_steps: int = 0
    steps: int = 0
    seconds: float = math.nan
    images_per_sec: float = math.nan
    error: str = ""
    notes: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- in the backend's process


def measure_model(
    name: str,
    precision: str,
    images,
    labels,
    input_size: int,
    batch_size: int,
    warmup_steps: int = 2,
    seconds: float = 3.0,
    min_steps: int = 3,
) -> Measured:
    """The trial's train step for ``name`` at ``precision`` on the current backend, data on the device."""
    import keras
    import numpy as np

    from bench.specs import TrialSpec
    from bench.trial.execution import current_backend
    from bench.trial.fit import build_device_trainer, build_trial_model
    from bench.trial.step_timer import time_steps, wait_for_device
    from data.device import IndexBatches
    from data.fit_input import FitInput

    measured = Measured(name, current_backend(), precision, input_size, batch_size)
    max_steps = len(images) // batch_size

    def fit(trainer, steps: int, seed: int) -> float:
        """Seconds of one ``fit`` of ``steps`` steps, the device waited for."""
        batches = IndexBatches(labels[: steps * batch_size], batch_size, shuffle=True, seed=seed)
        fit_input = FitInput(batches, epochs=1)

        def run(count: int) -> None:
            trainer.fit(fit_input.data, steps_per_epoch=count, epochs=1, shuffle=False, verbose=0)

        try:
            timing = time_steps(
                run, batch_size, min_steps=steps, max_steps=steps, chunk=steps, wait=lambda: wait_for_device(trainer)
            )
            return timing.seconds
        finally:
            fit_input.close()

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    try:
        spec = TrialSpec(
            name=f"{name}-{precision}",
            model=name,
            batch_size=batch_size,
            model_options={"input_size": input_size},
            precision=precision,
            data_on_device="on",
        )
        started = time.perf_counter()
        model, network = build_trial_model(spec, None, 2, precision)
        trainer = build_device_trainer(model, images, spec)
        measured.build_seconds = time.perf_counter() - started
        measured.params = int(network.count_params())
        measured.jit = "on" if trainer.jit_compile else "off"
        measured.warmup_steps = warmup_steps
        measured.warmup_seconds = fit(trainer, warmup_steps, seed=0)
        probe = fit(trainer, 2, seed=1) / 2  # steady seconds per step, to size the timed fit
        steps = int(np.clip(math.ceil(seconds / max(probe, 1e-6)), min_steps, max_steps))
        measured.steps = steps
        measured.seconds = fit(trainer, steps, seed=2)
        measured.images_per_sec = steps * batch_size / measured.seconds
        measured.notes = {"probe_seconds_per_step": probe, "dtype_policy": network.dtype_policy.name}
    except Exception as error:  # one failing model x precision is reported in the table, the others still run
        measured.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    finally:
        keras.backend.clear_session()
    return measured


def worker(args: argparse.Namespace) -> int:
    """Measure every model x precision on this process's backend; one result line per measure on stdout."""
    if os.environ.get("KERAS_BACKEND") != args.worker:
        raise SystemExit(f"the worker for {args.worker} must start with KERAS_BACKEND={args.worker}")
    from bench.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy as np

    from data.cache import ensure_cache
    from data.synthetic import ensure_synthetic_dataset

    if keras.backend.backend() != args.worker:
        raise SystemExit(f"Keras runs on {keras.backend.backend()}, not {args.worker}")
    cache = ensure_cache(args.data or ensure_synthetic_dataset())
    faces = cache.faces[cache.faces["label"] >= 0].sort_values("slot").head(DEVICE_IMAGES)
    images = cache.read(faces["slot"].to_numpy(np.int64))
    labels = faces["label"].to_numpy(np.int32)
    sizes = (args.input_size, args.batch_size)
    timing = {"warmup_steps": args.warmup_steps, "seconds": args.seconds, "min_steps": args.min_steps}
    for name in args.models:
        for precision in args.precisions:
            measured = measure_model(name, precision, images, labels, *sizes, **timing)
            print(RESULT_PREFIX + json.dumps(asdict(measured)), flush=True)
    return 0


# --------------------------------------------------------------------------- the parent


def run_backend(backend: str, args: argparse.Namespace, argv: list[str]) -> list[Measured]:
    """One subprocess with ``KERAS_BACKEND=backend``; its progress printed as it comes, its results returned."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    command = [sys.executable, "-m", "benchmarks.backends", "--worker", backend, *argv]
    root = Path(__file__).resolve().parent.parent
    results: list[Measured] = []
    started = time.perf_counter()
    with subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            if line.startswith(RESULT_PREFIX):
                measured = Measured(**json.loads(line[len(RESULT_PREFIX) :]))
                results.append(measured)
                print(f"  {progress_line(measured)}", flush=True)
            elif args.verbose or "Error" in line or "Traceback" in line:
                print(f"  [{backend}] {line.rstrip()}", flush=True)
        code = process.wait()
    print(f"  [{backend}] done in {time.perf_counter() - started:.0f} s (exit {code})", flush=True)
    if code != 0:
        for name in args.models:
            for precision in args.precisions:
                if not any(m.model == name and m.precision == precision for m in results):
                    missing = Measured(name, backend, precision, args.input_size, args.batch_size)
                    missing.error = f"the {backend} worker exited with {code} before measuring it"
                    results.append(missing)
    return results


def progress_line(measured: Measured) -> str:
    head = f"{measured.backend} {measured.model} {measured.precision}:"
    if measured.error:
        return f"{head} failed: {measured.error}"
    return (
        f"{head} {measured.images_per_sec:.1f} img/s ({measured.steps} steps in {measured.seconds:.2f} s); "
        f"build {measured.build_seconds:.1f} s, warm-up {measured.warmup_seconds:.1f} s "
        f"({measured.warmup_steps} steps, jit {measured.jit})"
    )


def _cell(measured: Measured | None, attribute: str, digits: int = 1) -> str:
    if measured is None:
        return "-"
    if measured.error:
        return "error"
    return f"{getattr(measured, attribute):,.{digits}f}"


def table(results: list[Measured], models: list[str], backends: list[str], precisions: list[str]) -> str:
    """Markdown: model x (backend, precision) train img/s, the faster backend per precision; then warm-up seconds."""
    found = {(m.model, m.backend, m.precision): m for m in results}
    columns = [(backend, precision) for backend in backends for precision in precisions]
    header = ["model", "params", *(f"{b} {p} img/s" for b, p in columns)]
    if len(backends) > 1:
        header += [f"faster, {p}" for p in precisions]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        cells = [m for m in (found.get((model, b, p)) for b, p in columns) if m is not None and not m.error]
        params = f"{cells[0].params:,}" if cells else "-"
        row = [model, params, *(_cell(found.get((model, b, p)), "images_per_sec") for b, p in columns)]
        if len(backends) > 1:
            row += [faster(found, model, backends, precision) for precision in precisions]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Warm-up (first fit, compilation included) and build seconds, apart from the img/s above:", ""]
    header = ["model", *(f"{b} {p} warm-up s (build s)" for b, p in columns)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        row = [model]
        for backend, precision in columns:
            measured = found.get((model, backend, precision))
            row.append(
                _cell(measured, "warmup_seconds")
                + ("" if measured is None or measured.error else f" ({measured.build_seconds:.1f})")
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def faster(found: dict, model: str, backends: list[str], precision: str) -> str:
    rates = {
        backend: found[(model, backend, precision)].images_per_sec
        for backend in backends
        if (model, backend, precision) in found and not found[(model, backend, precision)].error
    }
    if len(rates) < 2:
        return "-"
    ordered = sorted(rates, key=rates.get, reverse=True)
    return f"{ordered[0]} ({rates[ordered[0]] / rates[ordered[1]]:.2f}x)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered model names")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=KERAS_BACKENDS)
    parser.add_argument("--precisions", nargs="+", default=list(DEFAULT_PRECISIONS), choices=RESOLVED_PRECISIONS)
    parser.add_argument("--input-size", type=int, default=64, help="the network's input side (the crop is resized)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps of the first, untimed fit")
    parser.add_argument("--seconds", type=float, default=3.0, help="about how long the timed fit runs")
    parser.add_argument("--min-steps", type=int, default=3, help="fewest steps of the timed fit")
    parser.add_argument("--data", type=Path, help="Adience folder (default: the built-in synthetic data)")
    parser.add_argument("--json", type=Path, help="write every measure here as JSON")
    parser.add_argument("--verbose", action="store_true", help="pass on the workers' other output")
    parser.add_argument("--worker", choices=KERAS_BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.batch_size * max(args.min_steps, args.warmup_steps, 2) > DEVICE_IMAGES:
        parser.error(f"batch size x steps must fit in the {DEVICE_IMAGES} faces held on the device")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    worker_argv = [arg for arg in argv if arg != "--verbose"]
    left_out = [name for name in LEFT_OUT if name not in args.models]
    print(
        f"train img/s per backend and precision: {', '.join(args.models)}; {args.input_size} px network input, "
        f"batch {args.batch_size}, data on the device; CPU: {os.cpu_count()} cores",
        flush=True,
    )
    for name in left_out:
        print(f"left out: {name}: {LEFT_OUT[name]}", flush=True)
    started = time.perf_counter()
    results: list[Measured] = []
    for backend in args.backends:
        results += run_backend(backend, args, worker_argv)
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in results], indent=2))
    print(f"\nall backends in {time.perf_counter() - started:.0f} s\n")
    print(table(results, args.models, args.backends, args.precisions))
    return 0 if all(not m.error for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
