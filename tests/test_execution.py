"""bench/trial/execution.py and the trial's precision: auto resolved per node, mixed policies where they belong."""

import json
import math

import keras
import numpy as np
import pytest

from bench.specs import SpecError, TrialSpec
from bench.trial.execution import (
    fits_on_device,
    requested_backend,
    resolve_data_on_device,
    resolve_precision,
    running_backend,
    select_backend,
)
from bench.trial.fit import build_trial_model, run_trial
from tests.conftest import tiny_spec

pytestmark = pytest.mark.backends


def cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512, which oneDNN's bf16 kernels need: without it TensorFlow's bf16
    convolutions fall back to emulation (a bf16 train step took 18x fp32's on an AMD EPYC with
    AVX2 only, 2026-12-06)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return "avx512f" in cpuinfo.read().split()
    except OSError:
        return True  # not Linux: run the test rather than guess it away


@pytest.mark.parametrize(
    ("requested", "capabilities", "resolved"),
    [
        ("auto", [], "fp32"),  # a CPU
        ("auto", [(7, 0)], "fp32"),  # V100: no bf16 tensor cores
        ("auto", [(8, 0)], "bf16"),  # A100
        ("auto", [(9, 0), (9, 0)], "bf16"),  # H100 / H200
        ("auto", [(9, 0), (7, 5)], "fp32"),  # mixed GPUs: what every one of them does
        ("fp16", [], "fp16"),
        ("fp32", [(9, 0)], "fp32"),
    ],
)
def test_precision_auto_is_bf16_only_where_every_gpu_computes_it(requested, capabilities, resolved):
    assert resolve_precision(requested, capabilities) == resolved


def test_data_on_device_auto_needs_the_images_within_a_quarter_of_the_memory():
    assert fits_on_device(25, 100) and not fits_on_device(26, 100)
    assert not fits_on_device(1, None) and not fits_on_device(1, 0)
    assert resolve_data_on_device("auto", 10**9, memory_bytes=8 * 10**9) == "on"
    assert resolve_data_on_device("auto", 3 * 10**9, memory_bytes=8 * 10**9) == "off"
    assert resolve_data_on_device("off", 1, memory_bytes=10**12) == "off"
    assert resolve_data_on_device("on", 10**12, memory_bytes=1) == "on"


def test_the_backend_comes_from_the_command_line_or_the_resumed_run(tmp_path):
    assert requested_backend(["--suite", "x", "--backend", "jax"]) == "jax"
    assert requested_backend(["--backend=torch"]) == "torch"
    assert requested_backend(["--suite", "x"]) is None
    (tmp_path / "run.json").write_text(json.dumps({"backend": "jax"}))
    assert requested_backend(["--resume", str(tmp_path)]) == "jax"
    assert requested_backend(["--resume", str(tmp_path / "missing")]) is None
    environ = {}
    select_backend(["--backend", "jax"], environ)
    assert environ == {"KERAS_BACKEND": "jax"}
    select_backend(["--backend", "mxnet"], environ)  # the parser refuses it, in one line
    assert environ == {"KERAS_BACKEND": "jax"}
    assert running_backend(None) == running_backend(keras.backend.backend()) == keras.backend.backend()


@pytest.mark.parametrize("field", ["precision", "jit", "data_on_device"])
def test_a_spec_names_its_execution_choices(field):
    with pytest.raises(SpecError, match=f"{field} must be one of"):
        TrialSpec(name="x", model="tiny_cnn", **{field: "fast"})


def test_bf16_computes_the_network_in_bfloat16_and_keeps_lrn_preprocessing_and_output_in_float32():
    model, network = build_trial_model(TrialSpec(name="b", model="levi_hassner"), precision="bf16")
    assert network.get_layer("conv1").compute_dtype == "bfloat16"
    assert network.get_layer("conv1").variable_dtype == "float32"  # master weights stay float32
    assert network.get_layer("norm1").compute_dtype == "float32"
    assert model.get_layer("preprocessing").compute_dtype == "float32"
    probabilities = model.predict_on_batch(np.zeros((2, 256, 256, 3), np.uint8))
    assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_fp16_scales_the_loss():
    model, _ = build_trial_model(TrialSpec(name="h", model="tiny_cnn"), precision="fp16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    fp32, _ = build_trial_model(TrialSpec(name="f", model="tiny_cnn"), precision="fp32")
    assert not isinstance(fp32.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="JAX's CPU convolutions take 2-3.5x TensorFlow's time here; the band is checked in the TensorFlow leg",
)
@pytest.mark.skipif(
    not cpu_has_avx512(),
    reason="no AVX-512 on this CPU: bf16 runs emulated (18x fp32's step time), the two trials would take over "
    "20 minutes instead of about 2; the band is checked on CPUs with AVX-512",
)
def test_a_bf16_levi_hassner_smoke_trial_lands_in_the_fp32_trials_accuracy_band():
    """The baseline's smoke trial on the built-in data, in fp32 and in bf16: best val accuracy within 3 points.

    The network sees the 227 crop resized to 128 px (the trial's resize layer): 90 s for both
    trials here instead of 290 s at 227, and it still learns the data's strands (~0.97 in fp32).
    """
    from bench.plan.planner import PRESETS
    from bench.plan.suites import LEVI_HASSNER_SGD
    from data.cache import ensure_cache
    from data.synthetic import ensure_synthetic_dataset

    cache = ensure_cache(ensure_synthetic_dataset())
    smoke = PRESETS["smoke"].apply(LEVI_HASSNER_SGD).replace(model_options={"input_size": 128})
    best = {}
    for precision in ("fp32", "bf16"):
        spec = smoke.replace(precision=precision)
        reports = []
        run_trial(spec, cache, reports.append)
        assert {r["precision"] for r in reports} == {precision}
        assert all(math.isfinite(r["train_loss"]) for r in reports)
        best[precision] = max(r["val_accuracy"] for r in reports)
    assert best["fp32"] >= 0.8, best  # it learned: the band means something
    assert abs(best["bf16"] - best["fp32"]) <= 0.03, best


def test_jit_is_reported_as_keras_resolved_it(small_cache):
    reports = []
    run_trial(tiny_spec("j", epochs=1, jit="off"), small_cache, reports.append)
    assert reports[0]["jit"] == "off"
