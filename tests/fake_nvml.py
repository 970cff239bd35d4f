"""A fake ``pynvml`` module for tests: GPUs whose power, energy counter, utilisation,
memory and processes follow a settable clock, with pynvml's function names and errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace


class ManualClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeGpu:
    name: str
    power_w: Callable[[float], float]  # watts at time t
    energy_counter_mj: Callable[[float], float] | None = None  # None: counter not supported
    util: float = 50.0
    memory_used: int = 1_000_000_000
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    sm_util: dict[int, float] | None = field(default_factory=dict)  # pid -> SM percent; None: not supported
    uuid: str = "GPU-00000000"


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's spelling)
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801
    pass


class FakeNvml:
    """Pass as ``NvmlSampler(nvml=FakeNvml(...))``; ``fail_init`` plays a machine without a driver."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported

    def __init__(self, gpus: list[FakeGpu], clock: Callable[[], float], *, fail_init: bool = False):
        self.gpus = gpus
        self.clock = clock
        self.fail_init = fail_init
        self.initialised = 0
        self.shutdowns = 0

    def nvmlInit(self):
        if self.fail_init:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12040

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError("Not Found")

    def nvmlDeviceGetName(self, gpu):
        return gpu.name

    def nvmlDeviceGetPowerUsage(self, gpu):
        return int(round(gpu.power_w(self.clock()) * 1000))  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu):
        if gpu.energy_counter_mj is None:
            raise NVMLError_NotSupported("Not Supported")
        return int(round(gpu.energy_counter_mj(self.clock())))

    def nvmlDeviceGetUtilizationRates(self, gpu):
        return SimpleNamespace(gpu=gpu.util, memory=10)

    def nvmlDeviceGetMemoryInfo(self, gpu):
        return SimpleNamespace(used=gpu.memory_used, total=80_000_000_000, free=80_000_000_000 - gpu.memory_used)

    def nvmlDeviceGetUUID(self, gpu):
        return gpu.uuid

    def nvmlDeviceGetProcessUtilization(self, gpu, last_seen_us):
        """One sample per process since ``last_seen_us`` (NVML's CPU timestamps, in microseconds)."""
        if gpu.sm_util is None:
            raise NVMLError_NotSupported("Not Supported")
        now_us = int(self.clock() * 1_000_000)
        if now_us <= last_seen_us or not gpu.sm_util:
            raise NVMLError_NotFound("Not Found")
        return [
            SimpleNamespace(pid=pid, timeStamp=now_us, smUtil=sm, memUtil=0, encUtil=0, decUtil=0)
            for pid, sm in gpu.sm_util.items()
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, gpu):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]
