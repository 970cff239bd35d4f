"""How trials share the machine or cluster, decided before Ray schedules anything.

``plan_resources`` splits one machine's CPUs and GPUs between trials (fractional GPU shares,
how many at once); on a cluster of several nodes ``plan_node_resources`` sizes each trial to
fit the smallest node, since no trial spans two. ``check_address`` makes an unreachable
cluster one line, fast. No ray here.
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
    nodes: int = 1  # nodes with CPUs or GPUs for trials

    def line(self, trials: int) -> str:
        """The run's ``Ray:`` line."""
        where = f" on {self.nodes} nodes, each trial sized to fit the smallest" if self.nodes > 1 else ""
        return (
            f"Ray: {trials} trial(s){where}, {self.cpus_per_trial:g} CPU and {self.gpus_per_trial:g} GPU each, "
            f"at most {self.max_concurrent} at once"
        )


@dataclass(frozen=True)
class NodeCapacity:
    """What one alive node offers trials."""

    cpus: float
    gpus: float = 0.0


def plan_node_resources(
    nodes: list[NodeCapacity], max_concurrent: int | None, gpus_per_trial: float | None = None
) -> Resources:
    """Trials sized from the nodes: one trial's request fits on every node that holds trials.

    One node: ``plan_resources`` (every core to one trial on a CPU). Several: with GPUs, each
    trial takes ``gpus_per_trial`` (a whole GPU by default) and the CPUs of the smallest GPU
    node divided among the trials that fit there; without, a trial takes the CPUs of the
    smallest node, and as many run at once as the nodes hold.
    """
    usable = [node for node in nodes if node.cpus > 0 or node.gpus > 0]
    if len(usable) <= 1:
        total = usable[0] if usable else NodeCapacity(0.0)
        return plan_resources(total.cpus, total.gpus, max_concurrent, gpus_per_trial)
    gpu_nodes = [node for node in usable if node.gpus > 0]
    if gpu_nodes:
        share = gpus_per_trial or 1.0
        fits = [_trials_that_fit(node.gpus, share) for node in gpu_nodes]
        if not any(fits):
            raise RunnerError(f"--gpus-per-trial {share:g} asks for more GPU than any node has")
        cpus = min(node.cpus / fit for node, fit in zip(gpu_nodes, fits, strict=True) if fit)
        capacity = sum(fits)
    else:
        share, cpus = 0.0, min(node.cpus for node in usable)
        capacity = sum(int(node.cpus // cpus) for node in usable)
    return Resources(_cpus_per_trial(cpus), share, min(max_concurrent or capacity, capacity), nodes=len(usable))


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
        fit = max(1, _trials_that_fit(total_gpus, share))
        concurrent = min(max_concurrent or fit, fit)
    else:
        share = 0.0
        concurrent = max_concurrent or 1
    return Resources(_cpus_per_trial(total_cpus / concurrent), share, concurrent)


def _trials_that_fit(gpus: float, share: float) -> int:
    # the tolerance keeps 0.3 / 0.1 (2.999...) from counting 2 shares where 3 fit
    return max(0, int(math.floor(gpus / share + 1e-9)))


def _cpus_per_trial(cpus: float) -> float:
    """Whole cores where a trial gets one or more; else a share of one, a quarter at the least."""
    cpus = max(cpus, 0.25)
    return float(math.floor(cpus) if cpus >= 1 else round(cpus, 2))


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
