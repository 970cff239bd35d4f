"""Model FLOPs utilisation: the device peak a trial is measured against, and MFU itself.

A GPU's peak is the vendor's dense datasheet figure for the trial's precision, looked up by
NVML's device name (``device_peak``): fp32 counts against TF32 tensor cores where the GPU
has them (TensorFlow and JAX run float32 matrix products as TF32 there by default), bf16
and fp16 against the half-precision tensor cores. A MIG slice gets its share of the GPU's
SMs (NVIDIA's MIG guide: a ``Ng`` or ``Nc`` slice has N of the GPU's 7 compute slices, an
A30's 4). A CPU's peak is a float32 matrix product measured once per run. MFU is achieved
training FLOP/s (training FLOPs per image, ``bench.trial.flops.training_flops``, x img/s)
over that peak. No keras, no ray.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.choices import RESOLVED_PRECISIONS


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


@dataclass(frozen=True)
class DevicePeak:
    """Dense (no structured sparsity) peak FLOP/s from the vendor's datasheet; None: not computed natively."""

    name: str
    fp32: float  # CUDA cores
    tf32: float | None  # tensor cores on float32 data
    fp16: float | None  # tensor cores
    bf16: float | None  # tensor cores
    mig_slices: int | None = None  # the compute slices MIG divides it into; None: no MIG


_T = 1e12
# Ordered: the first pattern matching NVML's device name wins (PCIe/NVL before SXM).
GPU_PEAKS: tuple[tuple[re.Pattern[str], DevicePeak], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), peak)
    for pattern, peak in (
        (r"H100.*NVL", DevicePeak("H100 NVL", 60 * _T, 417.5 * _T, 835.5 * _T, 835.5 * _T, 7)),
        (r"H100.*PCIe", DevicePeak("H100 PCIe", 51.2 * _T, 378 * _T, 756 * _T, 756 * _T, 7)),
        (r"H100", DevicePeak("H100 SXM", 67 * _T, 494.7 * _T, 989.4 * _T, 989.4 * _T, 7)),
        (r"H200.*NVL", DevicePeak("H200 NVL", 60 * _T, 417.5 * _T, 835.5 * _T, 835.5 * _T, 7)),
        (r"H200", DevicePeak("H200 SXM", 67 * _T, 494.7 * _T, 989.4 * _T, 989.4 * _T, 7)),
        (r"A100", DevicePeak("A100", 19.5 * _T, 156 * _T, 312 * _T, 312 * _T, 7)),
        (r"\bA30\b", DevicePeak("A30", 10.3 * _T, 82 * _T, 165 * _T, 165 * _T, 4)),
        (r"\bL4\b", DevicePeak("L4", 30.3 * _T, 60 * _T, 121 * _T, 121 * _T)),
        (r"V100S", DevicePeak("V100S PCIe", 16.4 * _T, None, 130 * _T, None)),
        (r"V100.*PCIE", DevicePeak("V100 PCIe", 14 * _T, None, 112 * _T, None)),
        (r"V100", DevicePeak("V100 SXM2", 15.7 * _T, None, 125 * _T, None)),
        (r"\bT4\b", DevicePeak("T4", 8.1 * _T, None, 65 * _T, None)),
    )
)

# NVML names a MIG device "<GPU> MIG <profile>": "1g.10gb" (a GPU instance of one compute
# slice) or "1c.3g.40gb" (a compute instance of one slice inside a 3-slice GPU instance).
_MIG_PROFILE = re.compile(r"\bMIG\s+(?:(\d+)c\.)?(\d+)g\.\S+", re.IGNORECASE)


@dataclass(frozen=True)
class PeakFlops:
    """The peak a trial's MFU is measured against, and where that figure comes from."""

    flops: float
    source: str


def gpu_peak(device_name: str) -> DevicePeak | None:
    for pattern, peak in GPU_PEAKS:
        if pattern.search(device_name):
            return peak
    return None


def mig_slices(device_name: str) -> int | None:
    """The compute slices of a MIG device named by NVML, or None for a whole GPU."""
    match = _MIG_PROFILE.search(device_name)
    if match is None:
        return None
    compute, instance = match.groups()
    return int(compute or instance)


def device_peak(device_name: str, precision: str) -> tuple[PeakFlops | None, str | None]:
    """(one GPU's dense datasheet peak for ``precision``, or None with the reason).

    ``precision`` is fp32, bf16 or fp16 (a trial's resolved precision); a MIG slice gets
    its share of the GPU's SMs.
    """
    if precision not in RESOLVED_PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(RESOLVED_PRECISIONS)}")
    peak = gpu_peak(device_name)
    if peak is None:
        return None, f"no datasheet peak for {device_name}"
    if precision == "fp32":
        flops, what = (peak.tf32, "TF32") if peak.tf32 is not None else (peak.fp32, "FP32")
    else:
        flops, what = getattr(peak, precision), precision
        if flops is None:
            return None, f"{peak.name} has no {precision} tensor cores (no datasheet peak)"
    source = f"{peak.name} {what} dense datasheet peak"
    slices = mig_slices(device_name)
    if slices is None:
        return PeakFlops(flops, source), None
    if peak.mig_slices is None or not 0 < slices <= peak.mig_slices:
        return None, f"{device_name}: no MIG slice share known for {peak.name}"
    share = f"{slices}/{peak.mig_slices}"
    return PeakFlops(flops * slices / peak.mig_slices, f"{source} x {share} (MIG slice's share of the SMs)"), None


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
    train_flops_per_image: float | None, train_images_per_sec: float | None, peak_flops: float | None
) -> float | None:
    """Achieved training FLOP/s (training FLOPs per image x img/s) over the device peak."""
    if not all(_finite(v) and v > 0 for v in (train_flops_per_image, train_images_per_sec, peak_flops)):
        return None
    return train_flops_per_image * train_images_per_sec / peak_flops


def trial_peak(
    gpu_names: Sequence[str], cpu_peak_flops: float | None, precision: str | None
) -> tuple[PeakFlops | None, str | None]:
    """(the trial's device peak, or None with the reason): its GPUs' datasheet peaks for its
    ``precision`` (None: not recorded) summed, else this run's measured CPU peak."""
    if gpu_names and not precision:
        return None, "the trial recorded no precision to take a GPU peak for"
    if gpu_names:
        found = [device_peak(name, precision) for name in gpu_names]
        reasons = sorted({reason for _, reason in found if reason})
        if reasons:
            return None, "; ".join(reasons)
        peaks = [peak for peak, _ in found]
        label = peaks[0].source + (f" x{len(peaks)}" if len(peaks) > 1 else "")
        return PeakFlops(sum(p.flops for p in peaks), label), None
    if cpu_peak_flops and cpu_peak_flops > 0:
        return PeakFlops(cpu_peak_flops, "CPU float32 matrix-product peak measured for this run"), None
    return None, "no CPU peak measured for this run"
