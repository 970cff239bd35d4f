"""The trial's GPU sampler: power, energy, utilisation and memory of its leased GPUs, per epoch.

A background thread reads NVML every ``interval_s``; each epoch is a lap. Energy is the
delta of NVML's total-energy counter where the GPU has one, else sampled power integrated
over time; on a GPU the trial shares (its lease says so) that energy is attributed to it by
its share of the SM utilisation NVML reports per process, else by its lease's share
(bench/trial/energy_share.py). No keras and no ray here; NVML is opened by bench/trial/gpu.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from bench.trial.energy_share import attribute, process_sm_utilisation
from bench.trial.gpu import FROM_ENVIRONMENT, NvmlDevices, NvmlUnavailable, open_nvml, visible_gpu_selectors
from bench.trial.lease import GpuLease


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
    shared: bool | None = None  # leased a fraction of its GPU (others may compute there); None: no lease told
    energy_share: float | None = None  # the fraction of the GPUs' energy that is this trial's (1: whole GPUs)
    reason: str | None = None  # why GPU fields are null


@dataclass
class _Sample:
    time: float
    power_w: list[float | None]
    util: list[float | None]
    memory_used: list[int | None]
    process_memory: list[int | None]  # None: this process not seen on that GPU
    sm_util: list[dict[int, float] | None]  # per GPU: pid -> SM percent since the previous sample


class NvmlSampler:
    """Context manager sampling the trial's GPUs every ``interval_s`` on a background thread.

    ``lap()`` returns the reading since the previous lap (one epoch); leaving the context
    (or ``stop()``) returns the reading for the whole time. Energy is the delta of NVML's
    total-energy counter (mJ) where the GPU has one, else sampled power integrated over
    time (trapezoids). ``lease`` (the runner's, bench/trial/lease.py) names the GPUs to read
    (by UUID) and marks them shared where it is a fraction of one: that energy is then the
    trial's share (``energy_share``; ``energy_source`` says how it was found). Without a
    lease the GPUs are CUDA_VISIBLE_DEVICES's (or ``visible_devices``) and nothing is
    attributed: ``shared`` is None, as nothing told the trial whether others compute there.
    """

    def __init__(
        self,
        interval_s: float | None = 0.2,
        *,
        nvml: ModuleType | Any | None = None,
        visible_devices: str | None | object = FROM_ENVIRONMENT,
        pid: int | None = None,
        lease: GpuLease | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"interval_s must be > 0 or None, got {interval_s!r}")
        self.interval_s = interval_s
        self._nvml = nvml
        if visible_devices is FROM_ENVIRONMENT:
            visible_devices = lease.selectors if lease is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
        self._visible: str | None = visible_devices
        self.pid = os.getpid() if pid is None else pid
        self.lease = lease
        self.clock = clock
        self.reason: str | None = None
        self.names: tuple[str, ...] = ()
        self._handles: list[Any] = []
        self._counter_supported: list[bool] = []
        self._samples: list[_Sample] = []
        self._lock = threading.Lock()  # the samples list, appended by the thread and read by laps
        self._sampling = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._lap_at: float | None = None
        self._start_counters: list[int | None] = []
        self._lap_counters: list[int | None] = []
        self._lap_sample_index = 0
        self._utilisation_seen_at: list[int] = []  # per GPU: NVML's timestamp (us) of the last sample read
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
            if self.lease is not None and not self.lease.gpus:
                return "no GPU leased to this trial: it computes on the CPU"
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
        self._utilisation_seen_at = [0] * len(self._handles)
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
        with self._sampling:  # one reading at a time: each takes NVML's per-process samples since the last
            return self._sample()

    def _sample(self) -> int:
        now = self.clock()
        powers, utils, used, mine, sm_util = [], [], [], [], []
        for device, handle in enumerate(self._handles):
            milliwatts = self._query("nvmlDeviceGetPowerUsage", handle)
            powers.append(None if milliwatts is None else milliwatts / 1000.0)
            rates = self._query("nvmlDeviceGetUtilizationRates", handle)
            utils.append(None if rates is None else float(rates.gpu))
            memory = self._query("nvmlDeviceGetMemoryInfo", handle)
            used.append(None if memory is None else int(memory.used))
            processes = self._query("nvmlDeviceGetComputeRunningProcesses", handle) or []
            own = [p for p in processes if p.pid == self.pid]
            mine.append(sum(int(p.usedGpuMemory or 0) for p in own) if own else None)
            sm_util.append(self._process_utilisation(device, handle))
        with self._lock:
            self._samples.append(_Sample(now, powers, utils, used, mine, sm_util))
            return len(self._samples) - 1

    def _process_utilisation(self, device: int, handle) -> dict[int, float] | None:
        """pid -> SM percent of the samples NVML took since the last call; None: none, or not supported."""
        if self.lease is None or not self.lease.shared:
            return None  # only a shared GPU's energy is attributed
        samples = self._query("nvmlDeviceGetProcessUtilization", handle, self._utilisation_seen_at[device])
        if not samples:  # NotFound (no sample since then), NotSupported, ...
            return None
        self._utilisation_seen_at[device] = max(int(sample.timeStamp) for sample in samples)
        return process_sm_utilisation(samples)

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
        energies, sources, shares = [], set(), []
        for device, (begin, end) in enumerate(zip(start_counters, end_counters, strict=True)):
            if begin is not None and end is not None and end >= begin:
                measured, measured_by = (end - begin) / 1000.0, "counter"
            else:
                measured = _integrate([(s.time, s.power_w[device]) for s in samples])
                measured_by = "integrated_power"
            # the utilisation a sample holds is since the sample before it: the window's are after its first
            attribution = attribute(self.lease, self.pid, [s.sm_util[device] for s in samples[1:]])
            energies.append(None if measured is None else measured * attribution.fraction)
            sources.add(attribution.source(measured_by))
            shares.append(attribution.fraction)
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
            shared=None if self.lease is None else self.lease.shared,
            energy_share=sum(shares) / len(shares) if energy is not None and shares else None,
            reason=None if energy is not None else "GPU power could not be read, so energy is unknown",
        )


def _sum_or_none(values: Sequence[float | int | None]):
    return None if not values or any(v is None for v in values) else sum(values)


def _integrate(points: Sequence[tuple[float, float | None]]) -> float | None:
    """Trapezoid integral of (time, value) points; None if a value is missing."""
    if any(value is None for _, value in points):
        return None
    return float(np.trapezoid([value for _, value in points], [time for time, _ in points]))
