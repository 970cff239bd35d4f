"""How trials share the machine or cluster, decided before Ray schedules anything.

``plan_resources`` splits CPUs and GPUs between trials (fractional GPU shares, how many at
once); ``check_address`` makes an unreachable cluster one line, fast. No ray here.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass

from bench.errors import RunnerError

CLUSTER_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Resources:
    """What each trial asks Ray for, and how many trials run at once."""

    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int


def plan_resources(
    total_cpus: float, total_gpus: float, max_concurrent: int | None, gpus_per_trial: float | None = None
) -> Resources:
    """Split the machine between trials.

    With GPUs: ``gpus_per_trial`` of a GPU each (a whole one by default), as many at once
    as fit. Without: one trial at a time by default, taking every core (TensorFlow spreads
    one trial over all cores; two trials sharing them only add contention).
    """
    if gpus_per_trial is not None and total_gpus < gpus_per_trial:
        raise RunnerError(f"--gpus-per-trial {gpus_per_trial:g} asks for more GPU than the {total_gpus:g} present")
    if total_gpus > 0:
        share = gpus_per_trial or 1.0
        fit = max(1, int(math.floor(total_gpus / share + 1e-9)))
        concurrent = min(max_concurrent or fit, fit)
    else:
        share = 0.0
        concurrent = max_concurrent or 1
    cpus = max(total_cpus / concurrent, 0.25)
    cpus = math.floor(cpus) if cpus >= 1 else round(cpus, 2)
    return Resources(float(cpus), share, concurrent)


def check_address(address: str, timeout: float = CLUSTER_CONNECT_TIMEOUT_S) -> None:
    """Fail fast with one line when a ``host:port`` cluster address does not answer."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RunnerError(f"cluster address {address!r} is not host:port (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise RunnerError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None
