"""NVML, opened in one place: GPU discovery, CUDA's device ids mapped to NVML's GPUs, and the
driver, CUDA and GPU facts of the run's manifest (the trial's sampler: bench/trial/gpu_sampler.py).

No keras and no ray here. NVML is an injectable module (``pynvml`` from nvidia-ml-py by
default); without it, or without a visible GPU, every GPU figure is null and a reason says
why, never an exception. ``open_nvml`` is the only place that initialises NVML.

CUDA numbers its devices fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; NVML numbers
them by PCI bus. Trials run with PCI_BUS_ID (bench/execute/ray_env.py), so CUDA's device N is
NVML's N there; elsewhere an index names a GPU only on a machine with one, and a UUID always.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

FROM_ENVIRONMENT = object()  # a ``visible`` default: read CUDA_VISIBLE_DEVICES
PCI_BUS_ORDER = "PCI_BUS_ID"  # CUDA_DEVICE_ORDER under which CUDA's indices are NVML's


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


def visible_gpu_handles(nvml, selectors: list[str] | None, order: str | None | object = FROM_ENVIRONMENT) -> list:
    """NVML handles of the GPUs this process may use: every GPU, or those the selectors name.

    A UUID names its GPU; an index is NVML's index only under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
    (``order``, read from the environment by default) or on a machine with a single GPU: a
    ValueError says so otherwise, rather than measure another GPU than the one computing.
    """
    order = os.environ.get("CUDA_DEVICE_ORDER") if order is FROM_ENVIRONMENT else order
    if selectors is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    indices = [s for s in selectors if s.isdigit()]
    if indices and order != PCI_BUS_ORDER and nvml.nvmlDeviceGetCount() > 1:
        raise ValueError(
            f"CUDA_DEVICE_ORDER is {order or 'unset (fastest first)'}, so CUDA's device {indices[0]} need not be "
            f"NVML's: set CUDA_DEVICE_ORDER={PCI_BUS_ORDER} or name the GPUs by UUID"
        )
    return [
        nvml.nvmlDeviceGetHandleByIndex(int(s)) if s.isdigit() else nvml.nvmlDeviceGetHandleByUUID(s) for s in selectors
    ]


def gpu_uuids(selectors: list[str], nvml=None) -> tuple[str, ...]:
    """The NVML UUIDs of the GPUs ``selectors`` (CUDA ids) name; the ids as given where NVML cannot tell."""
    try:
        with nvml_devices(nvml, ",".join(selectors)) as devices:
            return tuple(_text(devices.nvml.nvmlDeviceGetUUID(handle)) for handle in devices.handles)
    except Exception:  # no NVML, a GPU it cannot open: the ids are all there is
        return tuple(selectors)


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
