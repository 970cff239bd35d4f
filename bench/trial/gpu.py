"""NVML, opened in one place: GPU discovery, the trial's power/energy/memory sampler, and
the driver, CUDA and GPU facts of the run's manifest.

No keras and no ray here. NVML is an injectable module (``pynvml`` from nvidia-ml-py by
default); without it, or without a visible GPU, every GPU figure is null and a reason says
why, never an exception. ``open_nvml`` is the only place that initialises NVML.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

FROM_ENVIRONMENT = object()  # a ``visible`` default: read CUDA_VISIBLE_DEVICES


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message is the one-line reason."""


@dataclass
class NvmlDevices:
    """An initialised NVML and the handles and names of the GPUs this process may use."""

    nvml: Any
    handles: list
    names: tuple[str, ...]

    def close(self) -> None:
        # best effort: the figures are already read
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def open_nvml(nvml: ModuleType | Any | None = None, visible: str | None | object = FROM_ENVIRONMENT) -> NvmlDevices:
    """Initialise NVML (``pynvml`` unless one is given) and open the visible GPUs (possibly none).

    ``visible`` is a CUDA_VISIBLE_DEVICES value (None: every GPU). Raises NvmlUnavailable
    with the reason; the caller closes what it gets.
    """
    if visible is FROM_ENVIRONMENT:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            raise NvmlUnavailable("NVML not available: the nvidia-ml-py package (pynvml) is not installed") from None
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise NvmlUnavailable(f"NVML not available: {_describe(error)}") from None
    try:
        handles = visible_gpu_handles(nvml, visible_gpu_selectors(visible))
        names = tuple(_text(nvml.nvmlDeviceGetName(handle)) for handle in handles)
    except Exception as error:
        NvmlDevices(nvml, [], ()).close()
        raise NvmlUnavailable(f"NVML could not open the GPUs {visible or '(all)'}: {_describe(error)}") from None
    return NvmlDevices(nvml, handles, names)


@contextlib.contextmanager
def nvml_devices(nvml=None, visible: str | None | object = FROM_ENVIRONMENT) -> Iterator[NvmlDevices]:
    """``open_nvml`` as a context: NVML is shut down on leaving it."""
    devices = open_nvml(nvml, visible)
    try:
        yield devices
    finally:
        devices.close()


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
        environment = os.environ.get("CUDA_VISIBLE_DEVICES")
        self._visible: str | None = environment if visible_devices is FROM_ENVIRONMENT else visible_devices
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
        self._devices: NvmlDevices | None = None
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
        self._devices.close()
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
        """Open the trial's GPUs; the reason when there are none."""
        if visible_gpu_selectors(self._visible) == []:
            return "no GPU assigned to this process (CUDA_VISIBLE_DEVICES hides every GPU)"
        try:
            devices = open_nvml(self._nvml, self._visible)
        except NvmlUnavailable as error:
            return str(error)
        self._nvml = devices.nvml
        if not devices.handles:
            devices.close()
            return "NVML sees no NVIDIA GPU"
        self._devices = devices
        self._handles, self.names = devices.handles, devices.names
        return None

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
        known_power = [p for p in summed_power if p is not None]
        if integrated_power is not None and duration > 0:
            power_mean = integrated_power / duration
        else:
            power_mean = sum(known_power) / len(known_power) if known_power else None
        utils = [u for s in samples for u in s.util if u is not None]
        memory = [_sum_or_none(s.memory_used) for s in samples]
        seen = [[m for m in s.process_memory if m is not None] for s in samples]
        mine = [sum(memory) for memory in seen if memory]
        # seen beside another process (or on a fractional lease): shared; seen alone: not; unseen: cannot tell
        shared = True if self.forced_shared or any(s.others_beside_us for s in samples) else (False if mine else None)
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
    return float(np.trapezoid([value for _, value in points], [time for time, _ in points]))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def local_gpu_count() -> int:
    """NVIDIA GPUs this process may use (CUDA_VISIBLE_DEVICES respected); 0 without NVML."""
    selectors = visible_gpu_selectors(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if selectors is not None:
        return len(selectors)
    try:
        with nvml_devices() as devices:
            return len(devices.handles)
    except Exception:  # no driver, no library, no GPU: all mean none to use
        return 0


def smallest_gpu_memory_bytes() -> int | None:
    """Total memory of the smallest GPU this process may use; None without NVML or a GPU."""
    try:
        with nvml_devices() as devices:
            totals = [int(devices.nvml.nvmlDeviceGetMemoryInfo(handle).total) for handle in devices.handles]
    except Exception:  # no driver, no library: no GPU to size against
        return None
    return min(totals) if totals else None


def driver_facts(nvml=None) -> tuple[dict[str, Any], str | None]:
    """The manifest's NVIDIA driver, newest CUDA it supports and visible GPU names, or the reason
    there are none."""
    try:
        with nvml_devices(nvml) as devices:
            driver = devices.nvml.nvmlSystemGetDriverVersion()
            cuda = devices.nvml.nvmlSystemGetCudaDriverVersion()
            names = list(devices.names)
    except NvmlUnavailable as error:
        return {}, str(error)
    except Exception as error:
        return {}, f"NVML query failed: {_describe(error)}"
    facts = {"nvidia_driver": _text(driver), "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}", "gpus": names}
    return facts, (None if names else "NVML sees no NVIDIA GPU (or CUDA_VISIBLE_DEVICES hides them)")
