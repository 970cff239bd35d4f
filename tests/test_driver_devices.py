"""The driver holds no accelerator: planning a run (GPU shares and estimates build every model)
creates no GPU client, checked with the backend's own registry of platforms."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.trial.execution import keep_driver_off_accelerators
from tests.conftest import REPO_ROOT

# A driver with a faked GPU platform: JAX calls a platform's factory when it creates that
# platform's client, so a call to this one is the client that would have held the GPU's memory.
# (Not named "cuda": JAX skips that name on a machine without an NVIDIA device.)
DRIVER_WITH_A_FAKED_GPU = r"""
import json
import sys

from jax._src import xla_bridge

gpu_clients = []


def fake_gpu_client():
    gpu_clients.append("faked_gpu")
    raise RuntimeError("a faked GPU platform")


xla_bridge.register_backend_factory("faked_gpu", fake_gpu_client, priority=200)

from bench.plan import estimate

estimate.smallest_gpu_memory_bytes = lambda: 80 * 2**30  # an 80 GB GPU, as NVML would say

import bench.run


def after_planning(prepared, run_dir, **options):
    shares = prepared.plan.scheduling.gpu_shares
    print(json.dumps({"gpu_clients": gpu_clients, "clients": sorted(xla_bridge._backends), "shares": shares}))
    return 0


bench.run.execute_and_report = after_planning  # the plan is made; its trials are not this test's
sys.exit(bench.run.main(sys.argv[1:]))
"""


def test_planning_with_auto_gpu_shares_creates_no_gpu_client_in_the_driver(tmp_path):
    pytest.importorskip("jax", reason="the check fakes a GPU platform through JAX's backend registry")
    result = subprocess.run(
        [sys.executable, "-c", DRIVER_WITH_A_FAKED_GPU]
        + ["--suite", "selftest", "--gpus-per-trial", "auto", "--out", str(tmp_path / "runs")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["shares"], "the plan sized no GPU shares: the models were not built"
    assert found["gpu_clients"] == [] and found["clients"] == ["cpu"], found


@pytest.fixture
def tensorflow_with_a_faked_gpu(monkeypatch):
    """TensorFlow listing one GPU; what the driver asks of its visible devices is recorded."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's device configuration: the TensorFlow backend only")
    import tensorflow as tf

    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu] if kind == "GPU" else [])
    asked = []
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda devices, kind=None: asked.append((devices, kind)))
    return tf, gpu, asked


def test_on_tensorflow_the_driver_hides_its_gpus_before_the_runtime_starts(tensorflow_with_a_faked_gpu):
    _, _, asked = tensorflow_with_a_faked_gpu
    assert keep_driver_off_accelerators() is None
    assert asked == [([], "GPU")]


def test_a_driver_whose_runtime_already_holds_a_gpu_says_so(tensorflow_with_a_faked_gpu, monkeypatch):
    tf, gpu, _ = tensorflow_with_a_faked_gpu

    def too_late(devices, kind=None):
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_visible_devices", too_late)
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind=None: [gpu])
    assert keep_driver_off_accelerators() == (
        "warning: Keras (tensorflow) already runs on /physical_device:GPU:0 in this process: the driver holds its memory"
    )
