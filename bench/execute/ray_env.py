"""The environment Ray and every trial run with, each variable with the reason for it.

Importing bench/execute/ applies both (``apply_ray_environment``) before any of its modules
imports ray: Ray reads some at import time, and a local cluster passes the driver's
environment on to its workers. A cluster's trials get ``TRIAL_ENVIRONMENT`` through the
job's runtime_env.
"""

from __future__ import annotations

import os

USER_AUTH_MODE = os.environ.get("RAY_AUTH_MODE")  # the user's own, read before it is set: for joining a cluster

# Set before ray is imported: Ray reads some of these at import time, and the local
# cluster it starts passes the driver's environment on to its workers.
LOCAL_RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",  # else Ray reports usage to an outside server
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else a one-machine cluster binds the network address
    "RAY_AIR_NEW_OUTPUT": "0",  # the new output engine prints its banner even at verbose=0
    # Save the experiment state at most once a second, not every 10+ s (Ray's default): a
    # driver killed after a trial finished would otherwise redo it on --resume. Not every
    # controller step (0): Tune steps ten times a second, and the saves then take CPU from
    # the trials (benchmarks/README.md, overhead).
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    # A failed trial's traceback stays in its error.txt; the driver prints one line per failure
    # (ProgressPrinter), not Ray Tune's traceback on the user's terminal.
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
}
# Inside every trial process: packed trials must not grab the whole GPU.
TRIAL_ENVIRONMENT = {
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # CUDA numbers GPUs fastest first by default, NVML by PCI bus: in this order a trial's CUDA
    # device N is NVML's N, so its GPU figures are read from the GPU it computes on
    "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    # A reused trial actor waits this long for the previous trial's thread to end (it
    # frees its model after its last report); Ray's default of 2 s fails the NEXT trial
    # whenever that takes longer, as it does on a busy CPU.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "300",
    # glibc gives each new thread its own heap arena (up to 8 per core), and Tune runs each
    # trial in a new thread of a reused worker: with the default, a 2-core worker's resident
    # memory climbed ~250 MB over its first 16 small trials; with 2 arenas it stayed flat
    # (tests/test_reliability.py's thirty-trial test). One arena per core keeps that bound
    # and leaves a many-core machine's input threads an arena each. A user's own is kept.
    "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", str(max(2, os.cpu_count() or 1))),
}


def trial_environment(backend: str) -> dict[str, str]:
    """A cluster's trial processes: TRIAL_ENVIRONMENT and the driver's Keras backend (a local Ray inherits it)."""
    return {**TRIAL_ENVIRONMENT, "KERAS_BACKEND": backend}


def apply_ray_environment() -> None:
    """This process's environment, for a local Ray and the trials it starts."""
    os.environ.update(LOCAL_RAY_ENVIRONMENT)
    os.environ.update(TRIAL_ENVIRONMENT)
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # explicit: Ray 2.60 turns it on in some starts and not others
