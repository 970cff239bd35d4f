"""A trial's GPU lease: what it says, and a trial leased a GPU its backend cannot compute on.

This machine has no GPU, so ``--gpus 1`` makes Ray lease one that no backend here sees:
exactly the trial that must fail at once, with the fix, rather than be reported as a GPU's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.trial.execution import backend_accelerators, current_backend
from bench.trial.fit import run_trial
from bench.trial.lease import GPU_FIX, DeviceMismatch, GpuLease, check_backend_devices

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_a_lease_is_shared_only_where_it_is_a_fraction_of_a_gpu():
    assert GpuLease(("GPU-a",), 0.25).shared and GpuLease(("GPU-a",), 0.25).describe() == "0.25 of GPU GPU-a"
    assert not GpuLease(("GPU-a", "GPU-b"), 1.0).shared
    assert not GpuLease().shared and GpuLease().describe() == "no GPU"
    assert GpuLease(("GPU-a", "GPU-b")).selectors == "GPU-a,GPU-b"
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="share must be > 0"):
            GpuLease(("GPU-a",), bad)


def test_a_backend_that_sees_fewer_gpus_than_leased_is_a_mismatch_naming_the_fix():
    lease = GpuLease(("GPU-a",), 0.5)
    with pytest.raises(DeviceMismatch) as raised:
        check_backend_devices(lease, "tensorflow", 0, "this TensorFlow is not a CUDA build")
    message = str(raised.value)
    assert "\n" not in message and 'pip install -e ".[gpu]"' in message and "--backend jax" in message
    assert (
        "leased 0.5 of GPU GPU-a" in message and "computes on the CPU (this TensorFlow is not a CUDA build)" in message
    )
    with pytest.raises(DeviceMismatch, match="computes on 1 of them"):
        check_backend_devices(GpuLease(("GPU-a", "GPU-b")), "jax", 1)
    for lease, seen in ((None, 0), (GpuLease(), 0), (GpuLease(("GPU-a",)), 1), (GpuLease(("GPU-a",)), 8)):
        check_backend_devices(lease, "jax", seen)  # nothing leased, or every leased GPU seen: no error


@pytest.mark.backends
def test_on_this_cpu_the_backend_lists_no_gpu_and_says_why():
    found, reason = backend_accelerators()
    assert found == 0 and reason, (current_backend(), reason)


@pytest.mark.backends
def test_a_trial_leased_a_gpu_fails_before_it_loads_anything():
    # spec and cache are never read: the lease is checked first
    with pytest.raises(DeviceMismatch, match=re.escape(GPU_FIX)):
        run_trial(None, None, lambda metrics, checkpoint=None: None, lease=GpuLease(("GPU-0",), 1.0))


@pytest.mark.slow
def test_a_run_whose_trials_were_leased_a_gpu_the_backend_cannot_see_exits_3_with_one_line_each(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--suite", "selftest", "--gpus", "1", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    failed = [line for line in result.stdout.splitlines() if line.startswith("[") and " failed: " in line]
    assert failed and all("DeviceMismatch: this trial was leased GPU 0" in line for line in failed), failed
    assert all(GPU_FIX in line for line in failed)
    assert "retrying once" not in result.stdout  # no retry mends it
    results = pd.read_csv(next(tmp_path.glob("*-selftest")) / "results.csv")
    assert (results["status"] == "failed").all() and results["error"].str.contains("DeviceMismatch").all()
    assert results["epochs_run"].fillna(0).eq(0).all()  # failed at once: not one epoch trained
