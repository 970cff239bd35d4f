"""What a trial costs: NVML power/energy/memory sampling, throughput, convergence and MFU.

Imports neither keras nor ray: the trial hands in callables (one inference batch) and plain
numbers (per-epoch accuracies and timings), so every definition here is tested on its own.
NVML is an injectable module (``pynvml`` from nvidia-ml-py by default); without it, or
without a visible GPU, every GPU field is null and ``reason`` says why, never an exception.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

PLATEAU_TOLERANCE = 0.005  # "within 0.5 pt of the trial's best", accuracy as a fraction
TRAINING_FLOPS_FACTOR = 3.0  # forward + backward ~ 3x forward (Kaplan et al.; MLPerf's MFU)

# --------------------------------------------------------------------------- NVML sampling


@dataclass(frozen=True)
class GpuReading:
    """GPU figures over one interval (an epoch, or the whole trial); None where not measured.

    Several GPUs are summed (energy, power, memory); utilisation is their mean.
    """

    seconds: float
    samples: int = 0
    gpu_count: int = 0
    gpu_names: tuple[str, ...] = ()
    energy_j: float | None = None
    energy_source: str | None = None  # "counter" (NVML total-energy delta) or "integrated_power"
    power_w_mean: float | None = None
    power_w_max: float | None = None
    gpu_util_mean: float | None = None  # percent
    memory_used_bytes_max: int | None = None  # whole device(s), every process
    process_memory_bytes_max: int | None = None  # this process alone
    shared: bool | None = None  # another process computed on one of our GPUs; None: cannot tell
    reason: str | None = None  # why GPU fields are null

    def to_report(self, prefix: str = "") -> dict[str, Any]:
        """Flat scalars for a per-epoch report: NaN for missing numbers, "" for missing text."""

        def number(value):
            return math.nan if value is None else float(value)

        return {
            f"{prefix}energy_j": number(self.energy_j),
            f"{prefix}power_w": number(self.power_w_mean),
            f"{prefix}power_w_max": number(self.power_w_max),
            f"{prefix}gpu_util": number(self.gpu_util_mean),
            f"{prefix}gpu_memory_bytes": number(self.memory_used_bytes_max),
            f"{prefix}process_gpu_memory_bytes": number(self.process_memory_bytes_max),
            f"{prefix}energy_source": self.energy_source or "",
            f"{prefix}gpu_count": self.gpu_count,
            f"{prefix}gpu_names": ", ".join(self.gpu_names),
            f"{prefix}gpu_shared": "" if self.shared is None else ("yes" if self.shared else "no"),
            f"{prefix}nvml_reason": self.reason or "",
        }


@dataclass
class _Sample:
    time: float
    power_w: list[float | None]
    util: list[float | None]
    memory_used: list[int | None]
    process_memory: list[int | None]  # None: this process not seen on that GPU
    others_beside_us: bool  # another pid computes on a GPU where this process does too


def visible_gpu_selectors(value: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES -> index/UUID strings; None: unset (every GPU); []: every GPU hidden.

    As CUDA does, the list ends at the first entry that is neither an index nor a UUID.
    """
    if value is None:
        return None
    selectors = []
    for entry in (part.strip() for part in value.split(",")):
        if entry.isdigit() or entry.startswith(("GPU-", "MIG-")):
            selectors.append(entry)
        else:
            break
    return selectors


def visible_gpu_handles(nvml, selectors: list[str] | None) -> list:
    """NVML handles of the GPUs this process may use: every GPU, or those the selectors name."""
    if selectors is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    return [
        nvml.nvmlDeviceGetHandleByIndex(int(s)) if s.isdigit() else nvml.nvmlDeviceGetHandleByUUID(s) for s in selectors
    ]


FROM_ENVIRONMENT = object()  # NvmlSampler(visible_devices=...) default: read CUDA_VISIBLE_DEVICES


class NvmlSampler:
    """Context manager sampling the trial's GPUs every ``interval_s`` on a background thread.

    ``lap()`` returns the reading since the previous lap (one epoch); leaving the context
    (or ``stop()``) returns the reading for the whole time. Energy is the delta of NVML's
    total-energy counter (mJ) where the GPU has one, else sampled power integrated over
    time (trapezoids). ``shared=True`` marks the trial as sharing its GPU whatever NVML
    sees (a fractional GPU lease); otherwise other processes seen computing on a GPU
    beside this one mark it shared.
    """

    def __init__(
        self,
        interval_s: float | None = 0.2,
        *,
        nvml: ModuleType | Any | None = None,
        visible_devices: str | None | object = FROM_ENVIRONMENT,
        pid: int | None = None,
        shared: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"interval_s must be > 0 or None, got {interval_s!r}")
        self.interval_s = interval_s
        self._nvml = nvml
        if visible_devices is FROM_ENVIRONMENT:
            visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self._visible: str | None = visible_devices
        self.pid = os.getpid() if pid is None else pid
        self.forced_shared = shared
        self.clock = clock
        self.reason: str | None = None
        self.names: tuple[str, ...] = ()
        self._handles: list[Any] = []
        self._counter_supported: list[bool] = []
        self._samples: list[_Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._lap_at: float | None = None
        self._start_counters: list[int | None] = []
        self._lap_counters: list[int | None] = []
        self._lap_sample_index = 0
        self._initialised = False
        self.record: GpuReading | None = None

    # lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> NvmlSampler:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self._started_at = self._lap_at = self.clock()
        self.reason = self._open()
        if self.reason:
            return
        counters = self._read_counters()
        self._counter_supported = [value is not None for value in counters]
        self._start_counters = self._lap_counters = counters
        self.sample()
        if self.interval_s is not None:
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> GpuReading:
        if self.record is not None:
            return self.record
        if self._started_at is None:
            raise RuntimeError("NvmlSampler.stop() before start()")
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self.reason:
            self.record = GpuReading(seconds=self.clock() - self._started_at, reason=self.reason)
            return self.record
        last = self.sample()
        counters = self._read_counters()
        self.record = self._reading(self._started_at, 0, self._start_counters, counters, last)
        self._close()
        return self.record

    def lap(self) -> GpuReading:
        """The reading since the last lap (or the start); the next lap starts now."""
        if self._lap_at is None:
            raise RuntimeError("NvmlSampler.lap() before start()")
        if self.reason:
            now = self.clock()
            reading = GpuReading(seconds=now - self._lap_at, reason=self.reason)
            self._lap_at = now
            return reading
        boundary = self.sample()
        counters = self._read_counters()
        reading = self._reading(self._lap_at, self._lap_sample_index, self._lap_counters, counters, boundary)
        self._lap_sample_index = boundary
        self._lap_at = self._samples[boundary].time
        self._lap_counters = counters
        return reading

    # NVML ----------------------------------------------------------------------------
    def _open(self) -> str | None:
        """Initialise NVML and find the trial's GPUs; the reason when there are none."""
        selectors = visible_gpu_selectors(self._visible)
        if selectors == []:
            return "no GPU assigned to this process (CUDA_VISIBLE_DEVICES hides every GPU)"
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                return "NVML not available: the nvidia-ml-py package (pynvml) is not installed"
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return f"NVML not available: {_describe(error)}"
        self._initialised = True
        try:
            handles = visible_gpu_handles(nvml, selectors)
            names = tuple(_text(nvml.nvmlDeviceGetName(handle)) for handle in handles)
        except Exception as error:
            self._close()
            return f"NVML could not open the GPUs {self._visible or '(all)'}: {_describe(error)}"
        if not handles:
            self._close()
            return "NVML sees no NVIDIA GPU"
        self._handles, self.names = handles, names
        return None

    def _close(self) -> None:
        if self._initialised:
            self._initialised = False
            # best effort: the figures are already read
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def _query(self, name: str, *args):
        try:
            return getattr(self._nvml, name)(*args)
        except Exception:  # NotSupported, GPU lost, ...: that one figure is missing
            return None

    def _read_counters(self) -> list[int | None]:
        values = [self._query("nvmlDeviceGetTotalEnergyConsumption", handle) for handle in self._handles]
        if self._counter_supported:
            values = [value if ok else None for value, ok in zip(values, self._counter_supported, strict=True)]
        return [None if value is None else int(value) for value in values]

    def sample(self) -> int:
        """Read every GPU once; returns the sample's index (the thread calls this too)."""
        now = self.clock()
        powers, utils, used, mine = [], [], [], []
        others_beside_us = False
        for handle in self._handles:
            milliwatts = self._query("nvmlDeviceGetPowerUsage", handle)
            powers.append(None if milliwatts is None else milliwatts / 1000.0)
            rates = self._query("nvmlDeviceGetUtilizationRates", handle)
            utils.append(None if rates is None else float(rates.gpu))
            memory = self._query("nvmlDeviceGetMemoryInfo", handle)
            used.append(None if memory is None else int(memory.used))
            processes = self._query("nvmlDeviceGetComputeRunningProcesses", handle) or []
            own = [p for p in processes if p.pid == self.pid]
            mine.append(sum(int(p.usedGpuMemory or 0) for p in own) if own else None)
            others_beside_us |= bool(own) and any(p.pid != self.pid for p in processes)
        with self._lock:
            self._samples.append(_Sample(now, powers, utils, used, mine, others_beside_us))
            return len(self._samples) - 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    # arithmetic ----------------------------------------------------------------------
    def _reading(
        self, since: float, first: int, start_counters: list[int | None], end_counters: list[int | None], last: int
    ) -> GpuReading:
        """Figures over samples ``first``..``last`` (both ends: a lap's boundary sample is shared)."""
        with self._lock:
            samples = self._samples[first : last + 1]
        seconds = samples[-1].time - since
        energies, sources = [], set()
        for device, (begin, end) in enumerate(zip(start_counters, end_counters, strict=True)):
            if begin is not None and end is not None and end >= begin:
                energies.append((end - begin) / 1000.0)
                sources.add("counter")
            else:
                integrated = _integrate([(s.time, s.power_w[device]) for s in samples])
                energies.append(integrated)
                sources.add("integrated_power")
        energy = None if any(e is None for e in energies) else sum(energies)
        summed_power = [_sum_or_none(s.power_w) for s in samples]
        integrated_power = _integrate([(s.time, p) for s, p in zip(samples, summed_power, strict=True)])
        duration = samples[-1].time - samples[0].time
        if integrated_power is not None and duration > 0:
            power_mean = integrated_power / duration
        else:
            known = [p for p in summed_power if p is not None]
            power_mean = sum(known) / len(known) if known else None
        known_power = [p for p in summed_power if p is not None]
        utils = [u for s in samples for u in s.util if u is not None]
        memory = [_sum_or_none(s.memory_used) for s in samples]
        mine = [
            sum(m for m in s.process_memory if m is not None)
            for s in samples
            if any(m is not None for m in s.process_memory)
        ]
        seen_ourselves = bool(mine)
        if self.forced_shared or any(s.others_beside_us for s in samples):
            shared: bool | None = True
        else:
            shared = False if seen_ourselves else None
        return GpuReading(
            seconds=seconds,
            samples=len(samples),
            gpu_count=len(self._handles),
            gpu_names=self.names,
            energy_j=energy,
            energy_source=" + ".join(sorted(sources)) if energy is not None else None,
            power_w_mean=power_mean,
            power_w_max=max(known_power) if known_power else None,
            gpu_util_mean=sum(utils) / len(utils) if utils else None,
            memory_used_bytes_max=max((m for m in memory if m is not None), default=None),
            process_memory_bytes_max=max(mine) if mine else None,
            shared=shared,
            reason=None if energy is not None else "GPU power could not be read, so energy is unknown",
        )


def _sum_or_none(values: Sequence[float | int | None]):
    return None if not values or any(v is None for v in values) else sum(values)


def _integrate(points: Sequence[tuple[float, float | None]]) -> float | None:
    """Trapezoid integral of (time, value) points; None if a value is missing."""
    if any(value is None for _, value in points):
        return None
    return sum((t1 - t0) * (v0 + v1) / 2.0 for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


# --------------------------------------------------------------------------- throughput


def resident_memory_bytes(pid: int | str = "self") -> float:
    """The process's resident memory now (Linux /proc), NaN where that cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return math.nan


def train_throughput(images: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """(epoch-1 img/s, steady img/s): steady is images over training seconds of epochs 2..n.

    Epoch 1 holds graph building and compilation, so it is reported apart; with one epoch
    there is no steady figure (NaN). Training seconds exclude validation.
    """
    if len(images) != len(seconds):
        raise ValueError(f"{len(images)} image counts but {len(seconds)} durations")
    pairs = [(n, s) for n, s in zip(images, seconds, strict=True) if _finite(n) and _finite(s) and s > 0]
    if not pairs:
        return math.nan, math.nan
    first = pairs[0][0] / pairs[0][1]
    steady = pairs[1:]
    return first, (sum(n for n, _ in steady) / sum(s for _, s in steady) if steady else math.nan)


@dataclass(frozen=True)
class InferenceTiming:
    images_per_sec: float
    batch_size: int
    batches: int
    seconds: float
    warmup_batches: int


def measure_inference(
    run_batch: Callable[[], Any],
    batch_size: int,
    *,
    warmup_batches: int = 2,
    min_batches: int = 5,
    min_seconds: float = 1.0,
    max_batches: int = 1000,
    clock: Callable[[], float] = time.perf_counter,
) -> InferenceTiming:
    """Images per second of ``run_batch`` (one forward pass of ``batch_size`` images).

    ``run_batch`` must block until its result is ready (e.g. return host values). The
    warm-up batches (tracing, compilation, allocator) are not timed; then batches run
    until both ``min_batches`` and ``min_seconds`` are reached.
    """
    if batch_size < 1 or min_batches < 1 or warmup_batches < 0:
        raise ValueError("batch_size and min_batches must be >= 1 and warmup_batches >= 0")
    for _ in range(warmup_batches):
        run_batch()
    batches = 0
    started = clock()
    elapsed = 0.0
    while batches < max_batches and (batches < min_batches or elapsed < min_seconds):
        run_batch()
        batches += 1
        elapsed = clock() - started
    return InferenceTiming(
        images_per_sec=batches * batch_size / elapsed if elapsed > 0 else math.nan,
        batch_size=batch_size,
        batches=batches,
        seconds=elapsed,
        warmup_batches=warmup_batches,
    )


# --------------------------------------------------------------------------- convergence


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def epochs_to_target(val_accuracy: Sequence[float], target: float) -> int | None:
    """First epoch (1-based) whose validation accuracy is >= ``target``; None if never."""
    for epoch, accuracy in enumerate(val_accuracy, start=1):
        if _finite(accuracy) and accuracy >= target:
            return epoch
    return None


def epochs_to_plateau(val_accuracy: Sequence[float], tolerance: float = PLATEAU_TOLERANCE) -> int | None:
    """First epoch (1-based) within ``tolerance`` of the trial's best validation accuracy."""
    finite = [a for a in val_accuracy if _finite(a)]
    if not finite:
        return None
    return epochs_to_target(val_accuracy, max(finite) - tolerance)


def time_to_target(val_accuracy: Sequence[float], elapsed_seconds: Sequence[float], target: float) -> float | None:
    """Wall seconds from the trial's start to the end of its epochs-to-target epoch."""
    epoch = epochs_to_target(val_accuracy, target)
    return None if epoch is None else float(elapsed_seconds[epoch - 1])


# --------------------------------------------------------------------------- MFU


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
    import numpy as np

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
    return TRAINING_FLOPS_FACTOR * flops_per_image * train_images_per_sec / peak_flops


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


def local_gpu_count() -> int:
    """NVIDIA GPUs this process may use (CUDA_VISIBLE_DEVICES respected); 0 without NVML."""
    selectors = visible_gpu_selectors(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if selectors is not None:
        return len(selectors)
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library, no GPU: all mean none to use
        return 0


def smallest_gpu_memory_bytes() -> int | None:
    """Total memory of the smallest GPU this process may use; None without NVML or a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: no GPU to size against
        return None
    try:
        handles = visible_gpu_handles(pynvml, visible_gpu_selectors(os.environ.get("CUDA_VISIBLE_DEVICES")))
        totals = [int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) for handle in handles]
        return min(totals) if totals else None
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()
