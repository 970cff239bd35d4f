"""The environment manifest saved with every run: versions, devices, driver, git commit, seeds.

Every figure a run reports carries this manifest, so two runs compare honestly. Each field
that cannot be found is null and ``missing`` says why, never an exception.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import REPO_ROOT
from bench.io import atomic_write_text
from bench.trial.gpu import driver_facts

MANIFEST_NAME = "manifest.json"
# Distributions that can provide `import tensorflow`, in the order they are looked up.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly")


@dataclass
class EnvManifest:
    """What a run ran on. ``missing`` maps a null field to the reason it is null."""

    created: str
    command: str
    seeds: list[int]
    python: str
    platform: str
    tensorflow: str | None
    keras: str | None
    keras_backend: str | None
    ray: str | None
    numpy: str | None
    nvidia_ml_py: str | None
    nvidia_driver: str | None
    cuda_driver: str | None  # the newest CUDA the driver supports (NVML)
    cuda_build: str | None  # the CUDA TensorFlow was built against
    cudnn_build: str | None
    gpus: list[str]
    cuda_visible_devices: str | None
    cpu_model: str | None
    cpu_cores: int | None  # logical cores this process may use
    cpu_count: int | None  # logical cores of the machine
    git_commit: str | None
    git_dirty: bool | None
    cpu_matmul_peak_flops: float | None = None  # measured once per run, for CPU MFU
    missing: dict[str, str] = field(default_factory=dict)
    jax: str | None = None
    # what the run asked of its trials (bench/trial/execution.py): backend, precision, jit, data_on_device;
    # each trial reports what its node resolved "auto" to (results.csv, the leaderboard)
    execution: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EnvManifest:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def summary(self) -> str:
        """One line for a leaderboard header."""
        gpus = ", ".join(self.gpus) if self.gpus else f"none ({self.missing.get('gpus', 'not found')})"
        driver = f"; NVIDIA driver {self.nvidia_driver}, CUDA {self.cuda_driver or 'n/a'}" if self.nvidia_driver else ""
        commit = (
            f"{self.git_commit[:10]}{' + local changes' if self.git_dirty else ''}" if self.git_commit else "unknown"
        )
        return (
            f"Python {self.python}, TensorFlow {self.tensorflow or 'n/a'}, Keras {self.keras or 'n/a'} "
            f"({self.keras_backend or 'n/a'} backend{f', JAX {self.jax}' if self.jax else ''}), Ray {self.ray or 'n/a'}; "
            f"CPU {self.cpu_model or 'unknown'} ({self.cpu_cores} cores); GPU {gpus}{driver}; commit {commit}"
        )

    def device(self) -> str:
        """The device the figures were measured on, for comparing two runs."""
        return ", ".join(self.gpus) if self.gpus else f"CPU {self.cpu_model or 'unknown'} x{self.cpu_cores}"


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _keras_backend() -> str | None:
    if "keras" not in sys.modules and _version("keras") is None:
        return None
    import keras  # the backend is settled when keras is imported (KERAS_BACKEND, ~/.keras/keras.json)

    return keras.config.backend()


def _tensorflow_build() -> dict[str, Any]:
    # on another backend TensorFlow is not loaded: importing it only for this costs seconds
    if _version(*TENSORFLOW_DISTRIBUTIONS) is None or "tensorflow" not in sys.modules:
        return {}
    import tensorflow as tf

    return dict(tf.sysconfig.get_build_info())


def _no_build_reason(build: dict[str, Any]) -> str:
    if build:
        return "this TensorFlow is not a CUDA build"
    if _version(*TENSORFLOW_DISTRIBUTIONS) is None:
        return "TensorFlow is not installed"
    return "TensorFlow is not loaded (Keras runs on another backend)"


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _cpu_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


NODE_FACTS = ("node_host", "node_python", "node_tensorflow", "node_keras", "node_ray", "node_jax")


def node_facts() -> dict[str, str]:
    """Where this process runs: host name and the versions a trial's figures depend on."""
    values = (
        socket.gethostname(),
        platform.python_version(),
        _version(*TENSORFLOW_DISTRIBUTIONS),
        _version("keras"),
        _version("ray"),
        _version("jax"),
    )
    return {name: value or "" for name, value in zip(NODE_FACTS, values, strict=True)}


def collect_manifest(
    *,
    seeds: Sequence[int],
    argv: Sequence[str] | None = None,
    repo: Path = REPO_ROOT,
    nvml=None,
    cpu_matmul_peak_flops: float | None = None,
    execution: dict[str, str] | None = None,
) -> EnvManifest:
    """The manifest for a run started with ``argv`` (default: this process's command line)."""
    argv = list(sys.argv if argv is None else argv)
    missing: dict[str, str] = {}
    build = _tensorflow_build()
    nvidia, nvidia_reason = driver_facts(nvml)
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no") if commit else None
    manifest = EnvManifest(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        command=shlex.join([Path(sys.executable).name, *argv]),
        seeds=sorted({int(seed) for seed in seeds}),
        python=platform.python_version(),
        platform=platform.platform(),
        tensorflow=_version(*TENSORFLOW_DISTRIBUTIONS),
        keras=_version("keras"),
        keras_backend=_keras_backend(),
        ray=_version("ray"),
        numpy=_version("numpy"),
        nvidia_ml_py=_version("nvidia-ml-py"),
        nvidia_driver=nvidia.get("nvidia_driver"),
        cuda_driver=nvidia.get("cuda_driver"),
        cuda_build=build.get("cuda_version"),
        cudnn_build=build.get("cudnn_version"),
        gpus=nvidia.get("gpus", []),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        cpu_model=_cpu_model(),
        cpu_cores=_cpu_cores(),
        cpu_count=os.cpu_count(),
        git_commit=commit,
        git_dirty=None if status is None else bool(status),
        cpu_matmul_peak_flops=cpu_matmul_peak_flops,
        missing=missing,
        jax=_version("jax"),
        execution=dict(execution or {}),
    )
    reasons = {
        "tensorflow": "TensorFlow is not installed",
        "keras": "Keras is not installed",
        "keras_backend": "Keras is not installed",
        "ray": "Ray is not installed",
        "numpy": "numpy is not installed",
        "nvidia_ml_py": "the nvidia-ml-py package (pynvml) is not installed",
        "nvidia_driver": nvidia_reason,
        "cuda_driver": nvidia_reason,
        "cuda_build": _no_build_reason(build),
        "cudnn_build": _no_build_reason(build),
        "gpus": nvidia_reason,
        "cuda_visible_devices": "CUDA_VISIBLE_DEVICES is not set (every GPU is visible)",
        "cpu_model": "neither /proc/cpuinfo nor platform.processor() names the CPU",
        "cpu_cores": "os.sched_getaffinity and os.cpu_count are unavailable",
        "cpu_count": "os.cpu_count() is unavailable",
        "git_commit": f"{repo} is not a git checkout (or git is not installed)",
        "git_dirty": f"{repo} is not a git checkout (or git is not installed)",
        "cpu_matmul_peak_flops": "not measured for this run",
        "jax": "JAX is not installed",
    }
    for name, reason in reasons.items():
        if getattr(manifest, name) in (None, []) and reason:
            missing[name] = reason
    return manifest


def write_manifest(manifest: EnvManifest, run_dir: Path) -> Path:
    path = run_dir / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(run_dir: Path) -> EnvManifest | None:
    path = run_dir / MANIFEST_NAME
    return EnvManifest.from_dict(json.loads(path.read_text())) if path.is_file() else None
