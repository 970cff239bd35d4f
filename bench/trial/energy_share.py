"""A shared GPU's energy, attributed to one trial: by its share of the SM utilisation, else its lease.

NVML's total-energy counter is the whole device's: four trials packed on one GPU that each
report its delta would report four times what the GPU used. Like Kepler's GPU power model,
a packed trial takes the counter's delta over its window in proportion to its share of the
SM utilisation NVML reports per process (``nvmlDeviceGetProcessUtilization``) over that
window; where NVML does not list this process (a container's own pid namespace, a driver
without per-process accounting, no sample in the window) it takes its lease's share. Over
one window the SM shares of a GPU's processes add up to one and Ray's leases of one GPU to
at most one, so the trials' energies never add up to more than the counter's delta. The
idle power is not set apart (Kepler does): a trial's share of it follows its share of the
activity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bench.trial.lease import GpuLease

WHOLE = "whole"  # not attributed: the trial holds the whole GPU, or no lease says otherwise
SM_SHARE = "sm_share"
LEASE_SHARE = "lease_share"


@dataclass(frozen=True)
class Attribution:
    """The fraction of a GPU's energy that is the trial's, and how it was found."""

    fraction: float
    basis: str  # WHOLE, SM_SHARE or LEASE_SHARE

    def source(self, measured_by: str) -> str:
        """``energy_source``: how the GPU's energy was measured, and how it was attributed."""
        return measured_by if self.basis == WHOLE else f"{measured_by}*{self.basis}"


def process_sm_utilisation(samples: Iterable) -> dict[int, float]:
    """pid -> summed SM utilisation (percent) of NVML process-utilisation samples (pynvml structs)."""
    totals: dict[int, float] = {}
    for sample in samples:
        totals[int(sample.pid)] = totals.get(int(sample.pid), 0.0) + float(sample.smUtil)
    return totals


def attribute(lease: GpuLease | None, pid: int, windows: Iterable[Mapping[int, float] | None]) -> Attribution:
    """The trial's fraction of one GPU's energy over a window of per-process SM utilisation readings.

    ``windows``: the window's readings (pid -> SM percent; None where NVML answered nothing).
    """
    if lease is None or not lease.shared:
        return Attribution(1.0, WHOLE)
    own = total = 0.0
    seen = False
    for reading in windows:
        if not reading:
            continue
        seen |= pid in reading
        own += reading.get(pid, 0.0)
        total += sum(reading.values())
    if seen and total > 0:
        return Attribution(own / total, SM_SHARE)
    return Attribution(min(lease.share, 1.0), LEASE_SHARE)
