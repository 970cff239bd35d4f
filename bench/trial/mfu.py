"""Model FLOPs utilisation: the device peaks a trial is measured against, and MFU itself.

GPU peaks are the vendor's dense datasheet figures looked up by NVML's device name; a CPU's
peak is a float32 matrix product measured once per run. MFU is achieved training FLOP/s
(``TRAINING_TO_FORWARD`` x forward FLOPs per image x img/s) over that peak. No keras, no ray.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# DESIGN, measurement rules: a training step costs about 3x the forward pass (forward, the
# gradients with respect to activations and to weights; Kaplan et al., MLPerf's MFU).
TRAINING_TO_FORWARD = 3


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


@dataclass(frozen=True)
class DevicePeak:
    """Dense (no structured sparsity) peak FLOP/s from the vendor's datasheet."""

    name: str
    fp32: float  # CUDA cores
    tf32: float | None  # tensor cores on float32 data; None: the GPU has no TF32
    fp16: float  # tensor cores, FP16/BF16


_T = 1e12
# Ordered: the first pattern matching NVML's device name wins (PCIe/NVL before SXM).
GPU_PEAKS: tuple[tuple[re.Pattern[str], DevicePeak], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), peak)
    for pattern, peak in (
        (r"H100.*NVL", DevicePeak("H100 NVL", 60 * _T, 417.5 * _T, 835.5 * _T)),
        (r"H100.*PCIe", DevicePeak("H100 PCIe", 51.2 * _T, 378 * _T, 756 * _T)),
        (r"H100", DevicePeak("H100 SXM", 67 * _T, 494.7 * _T, 989.4 * _T)),
        (r"H200.*NVL", DevicePeak("H200 NVL", 60 * _T, 417.5 * _T, 835.5 * _T)),
        (r"H200", DevicePeak("H200 SXM", 67 * _T, 494.7 * _T, 989.4 * _T)),
        (r"A100", DevicePeak("A100", 19.5 * _T, 156 * _T, 312 * _T)),
        (r"\bL4\b", DevicePeak("L4", 30.3 * _T, 60 * _T, 121 * _T)),
        (r"V100S", DevicePeak("V100S PCIe", 16.4 * _T, None, 130 * _T)),
        (r"V100.*PCIE", DevicePeak("V100 PCIe", 14 * _T, None, 112 * _T)),
        (r"V100", DevicePeak("V100 SXM2", 15.7 * _T, None, 125 * _T)),
        (r"\bT4\b", DevicePeak("T4", 8.1 * _T, None, 65 * _T)),
    )
)


def gpu_peak(device_name: str) -> DevicePeak | None:
    for pattern, peak in GPU_PEAKS:
        if pattern.search(device_name):
            return peak
    return None


def gpu_peak_flops(device_name: str, compute_dtype: str = "float32") -> tuple[float, str] | None:
    """(peak FLOP/s, what it is) for one GPU, or None for a GPU not in the table.

    float32 training counts against the TF32 tensor-core peak where the GPU has one:
    TensorFlow and JAX run float32 matrix products as TF32 there by default.
    """
    peak = gpu_peak(device_name)
    if peak is None:
        return None
    if compute_dtype in ("float16", "bfloat16"):
        return peak.fp16, f"{peak.name} {compute_dtype} dense datasheet peak"
    if peak.tf32 is not None:
        return peak.tf32, f"{peak.name} TF32 dense datasheet peak"
    return peak.fp32, f"{peak.name} FP32 datasheet peak"


def measure_cpu_matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 matrix-product FLOP/s of this CPU through numpy's BLAS (2 n^3 per product).

    The best of ``repeats`` products: on a CPU shared with other work, the fastest one is
    the closest to what the cores can do.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # BLAS thread start-up and page faults stay out of the timing
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def model_flops_utilisation(
    flops_per_image: float | None, train_images_per_sec: float | None, peak_flops: float | None
) -> float | None:
    """Achieved training FLOP/s (3x forward FLOPs per image x img/s) over the device peak."""
    if not all(_finite(v) and v > 0 for v in (flops_per_image, train_images_per_sec, peak_flops)):
        return None
    return TRAINING_TO_FORWARD * flops_per_image * train_images_per_sec / peak_flops


@dataclass(frozen=True)
class PeakFlops:
    """The peak a trial's MFU is measured against, and where that figure comes from."""

    flops: float
    source: str


def trial_peak(
    gpu_names: Sequence[str], cpu_peak_flops: float | None, compute_dtype: str = "float32"
) -> tuple[PeakFlops | None, str | None]:
    """(the trial's device peak, or None with the reason): its GPUs' datasheet peaks summed,
    else this run's measured CPU peak."""
    if gpu_names:
        peaks = [gpu_peak_flops(name, compute_dtype) for name in gpu_names]
        if any(p is None for p in peaks):
            unknown = sorted({n for n, p in zip(gpu_names, peaks, strict=True) if p is None})
            return None, f"no datasheet peak for {', '.join(unknown)}"
        label = peaks[0][1] + (f" x{len(peaks)}" if len(peaks) > 1 else "")
        return PeakFlops(sum(p[0] for p in peaks), label), None
    if cpu_peak_flops and cpu_peak_flops > 0:
        return PeakFlops(cpu_peak_flops, "CPU float32 matrix-product peak measured for this run"), None
    return None, "no CPU peak measured for this run"
