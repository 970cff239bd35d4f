"""A trial's GPU lease, as the runner tells it: which GPUs (by UUID) and what share of each.

Ray packs fractional-GPU trials on one GPU and tells each worker only its device ids;
nothing in the trial process can see who else was packed there (a container's own pid
namespace hides the other trials from NVML's process list). So the runner hands every
trial a ``GpuLease``: the trial marks its GPU figures shared from it, attributes a shared
GPU's energy with it (bench/trial/energy_share.py), and checks that its backend computes on
the accelerators it was leased (``check_backend_devices``). No keras and no ray here.
"""

from __future__ import annotations

from dataclasses import dataclass

GPU_FIX = 'install JAX with CUDA (pip install -e ".[gpu]") and run with --backend jax'


class DeviceMismatch(RuntimeError):
    """A trial was leased GPUs its backend cannot compute on: no retry mends it (one line, the fix)."""


@dataclass(frozen=True)
class GpuLease:
    """The GPUs a trial was given: NVML UUIDs (a device id where NVML cannot name it) and its share of each.

    ``share`` is the fraction of each GPU the trial asked the scheduler for (0.25 when four
    trials pack one GPU; 1 for a whole GPU or more); a CPU trial's lease has no GPUs.
    """

    gpus: tuple[str, ...] = ()
    share: float = 1.0

    def __post_init__(self):
        if not self.share > 0:
            raise ValueError(f"a GPU lease's share must be > 0, got {self.share!r}")

    @property
    def shared(self) -> bool:
        """Leased a fraction of a GPU: other trials may compute on it beside this one."""
        return bool(self.gpus) and self.share < 1.0

    @property
    def selectors(self) -> str:
        """The GPUs as a CUDA_VISIBLE_DEVICES value."""
        return ",".join(self.gpus)

    def describe(self) -> str:
        share = f"{self.share:g} of " if self.shared else ""
        return f"{share}GPU {', '.join(self.gpus)}" if self.gpus else "no GPU"


def check_backend_devices(lease: GpuLease | None, backend: str, accelerators: int, reason: str = "") -> None:
    """Raise DeviceMismatch where the trial was leased GPUs and its backend computes on fewer.

    ``accelerators``: the GPUs the backend itself lists (bench/trial/execution.py,
    ``backend_accelerators``); ``reason`` says why it lists none where that is known.
    """
    if lease is None or not lease.gpus or accelerators >= len(lease.gpus):
        return
    where = "the CPU" if accelerators == 0 else f"{accelerators} of them"
    because = f" ({reason})" if reason else ""
    raise DeviceMismatch(
        f"this trial was leased {lease.describe()} but Keras's {backend} backend computes on {where}{because}: "
        f"{GPU_FIX}"
    )
