"""How a trial executes: the Keras backend, numeric precision, XLA, and where its images live.

A spec asks (``precision``, ``jit``, ``data_on_device``: ``auto`` or a choice); the node that
runs the trial resolves ``auto`` against what it has, and the trial reports the resolved
values (``Execution``) with every epoch, so results and the leaderboard say how each figure
was made. ``auto`` means: bf16 on GPUs that compute it natively (compute capability 8.0,
Ampere, and newer), fp32 elsewhere; XLA where Keras chooses it (every GPU, always on JAX,
never on a TensorFlow CPU nor on PyTorch); the images on the device where they take at most
a quarter of its memory (data/device.py). The backend itself is the process's
(``KERAS_BACKEND``): ``--backend`` sets it for the driver and the trials before Keras loads
(``select_backend``), so this module imports Keras only inside its functions.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.choices import BACKENDS, EXECUTION_KEYS, RESOLVED_PRECISIONS

# auto puts a trial's images on the device when they take at most this share of its memory:
# four packed trials (--gpus-per-trial 0.25) then hold at most the whole memory's quarter each
DEVICE_DATA_SHARE = 0.25
# Keras dtype policies; fp16 also gets a LossScaleOptimizer (compile's auto_scale_loss)
DTYPE_POLICIES = dict(zip(RESOLVED_PRECISIONS, ("float32", "mixed_bfloat16", "mixed_float16"), strict=True))
BF16_COMPUTE_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Execution:
    """How one trial ran, resolved: what it reports beside its figures."""

    backend: str
    precision: str  # fp32, bf16, fp16
    jit: str  # on, off
    data_on_device: str  # on, off

    def as_metrics(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in EXECUTION_KEYS}


def current_backend() -> str:
    import keras

    return keras.backend.backend()


def running_backend(requested: str | None) -> str:
    """The backend Keras runs on here: the one asked for, or a UsageError where Keras already runs another."""
    from bench.errors import UsageError

    running = current_backend()
    if requested and requested != running:
        raise UsageError(
            f"--backend {requested}: Keras already runs on {running} in this process; start a fresh one "
            f"(python -m bench.run ... --backend {requested}, or KERAS_BACKEND={requested})"
        )
    return running


def requested_backend(argv: Sequence[str]) -> str | None:
    """``--backend NAME`` from a bench.run command line, or the backend a ``--resume``d run used."""
    for index, word in enumerate(argv):
        if word == "--backend" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("--backend="):
            return word.split("=", 1)[1]
    for index, word in enumerate(argv):
        resume = argv[index + 1] if word == "--resume" and index + 1 < len(argv) else None
        resume = word.split("=", 1)[1] if word.startswith("--resume=") else resume
        if resume:
            try:
                return json.loads((Path(resume).expanduser() / "run.json").read_text()).get("backend")
            except (OSError, ValueError, AttributeError):
                return None  # bench.run says what is wrong with the folder
    return None


def select_backend(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> None:
    """Set ``KERAS_BACKEND`` (this process and, inherited, its trials) from the command line.

    Must run before Keras is first imported; a name that is not a backend is left for the
    argument parser to refuse in one line.
    """
    environ = os.environ if environ is None else environ
    backend = requested_backend(argv)
    if backend in BACKENDS:
        environ["KERAS_BACKEND"] = backend


def keep_driver_off_accelerators() -> str | None:
    """This process (a run's driver) computes on the CPU only, whatever accelerators it could see.

    The driver builds models for its estimates and GPU shares (bench/plan/estimate.py) and
    trains none: a backend left to itself would open a client on every GPU there (JAX
    preallocates most of each one's memory) and hold it all run, beside the trials the shares
    were sized for. Trials run in processes of their own and see their GPUs. Call it before
    the backend first computes; returns a one-line warning where it had already started on
    an accelerator, else None. Keras on torch places tensors on its own default device and is
    left as it is.
    """
    backend = current_backend()
    if backend == "jax":
        import jax
        from jax._src import xla_bridge  # whether a client exists yet: JAX has no public call for it

        if not xla_bridge.backends_are_initialized():
            jax.config.update("jax_platforms", "cpu")
            return None
        started = sorted(name for name in xla_bridge.backends() if name != "cpu")
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            return None
        try:
            tf.config.set_visible_devices([], "GPU")
            return None
        except RuntimeError:  # the runtime has started: its devices are fixed
            started = [device.name for device in tf.config.get_visible_devices("GPU")]
    else:
        return None
    if not started:
        return None
    return (
        f"warning: Keras ({backend}) already runs on {', '.join(started)} in this process: the driver holds its memory"
    )


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) of each GPU the current backend sees; [] on a CPU."""
    backend = current_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        found = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            found.append(tuple(details.get("compute_capability", (0, 0))))
        return found
    if backend == "jax":
        import jax

        return [_capability(getattr(d, "compute_capability", "0.0")) for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return []
        return [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]
    return []


def backend_accelerators() -> tuple[int, str]:
    """(GPUs the current backend computes on, why none where it lists none): the trial's device truth.

    Asks the backend itself, not NVML: a ``tensorflow-cpu``, a JAX without its CUDA plugin or
    a torch without CUDA sees no GPU however many the machine has.
    """
    backend = current_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        found = len(tf.config.list_logical_devices("GPU"))
        built = tf.test.is_built_with_cuda()
        return found, "" if found else ("TensorFlow sees no GPU" if built else "this TensorFlow is not a CUDA build")
    if backend == "jax":
        import jax

        found = sum(1 for device in jax.devices() if device.platform in ("gpu", "cuda"))
        return found, "" if found else f"JAX computes on {jax.default_backend()}: its CUDA plugin is not installed"
    if backend == "torch":
        import torch

        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return found, "" if found else "this torch has no CUDA"
    return 0, f"the {backend} backend has no GPU"


def _capability(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return 0, 0


def resolve_precision(requested: str, capabilities: list[tuple[int, int]] | None = None) -> str:
    """``auto``: bf16 where every visible GPU computes it natively, fp32 on CPUs and older GPUs."""
    if requested != "auto":
        return requested
    capabilities = gpu_compute_capabilities() if capabilities is None else capabilities
    if capabilities and all(capability >= BF16_COMPUTE_CAPABILITY for capability in capabilities):
        return "bf16"
    return "fp32"


def jit_compile_argument(requested: str) -> bool | str:
    """``model.compile``'s ``jit_compile``: ``auto`` leaves Keras's own choice."""
    return {"on": True, "off": False}.get(requested, "auto")


def device_memory_bytes() -> float | None:
    """Memory of the device a trial's images would go to: the first visible GPU's, else the host's available."""
    if gpu_compute_capabilities():
        from bench.trial.gpu import smallest_gpu_memory_bytes

        return smallest_gpu_memory_bytes()
    return host_available_memory_bytes()


def host_available_memory_bytes() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def fits_on_device(image_bytes: int, device_memory_bytes: float | None, share: float = DEVICE_DATA_SHARE) -> bool:
    """Whether ``image_bytes`` fit in ``share`` of a device's memory (unknown memory: they do not)."""
    if device_memory_bytes is None or not device_memory_bytes > 0:
        return False
    return image_bytes <= share * device_memory_bytes


def resolve_data_on_device(requested: str, image_bytes: int, memory_bytes: float | None = None) -> str:
    """``on`` / ``off``; ``auto``: on where the images fit in a share of the device's memory."""
    if requested != "auto":
        return requested
    memory_bytes = device_memory_bytes() if memory_bytes is None else memory_bytes
    return "on" if fits_on_device(image_bytes, memory_bytes) else "off"


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Keras's global dtype policy for ``precision`` while a trial builds its model, restored after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(DTYPE_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
