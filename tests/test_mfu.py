"""bench.trial.mfu: datasheet peaks by GPU name, the measured CPU peak, and MFU's definition."""

import math

import pytest

from bench.trial.mfu import gpu_peak_flops, measure_cpu_matmul_peak, model_flops_utilisation, trial_peak

# --------------------------------------------------------------------------- MFU


def test_mfu_is_three_forward_passes_over_the_peak():
    assert model_flops_utilisation(1e9, 100.0, 1e12) == pytest.approx(0.3)
    assert model_flops_utilisation(None, 100.0, 1e12) is None
    assert model_flops_utilisation(math.nan, 100.0, 1e12) is None
    assert model_flops_utilisation(1e9, 100.0, None) is None


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", 494.7),
        ("NVIDIA H100 PCIe", 378),
        ("NVIDIA H100 NVL", 417.5),
        ("NVIDIA H200", 494.7),
        ("NVIDIA A100-SXM4-80GB", 156),
        ("NVIDIA A100 80GB PCIe", 156),
        ("NVIDIA L4", 60),
        ("Tesla V100-SXM2-16GB", 15.7),  # no TF32: the FP32 peak
        ("Tesla V100-PCIE-32GB", 14),
        ("Tesla T4", 8.1),
    ],
)
def test_gpu_peaks_by_device_name(name, tflops):
    flops, label = gpu_peak_flops(name)
    assert flops == pytest.approx(tflops * 1e12)
    assert "datasheet" in label


def test_half_precision_peak_and_unknown_gpus():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3", "bfloat16")[0] == pytest.approx(989.4e12)
    assert gpu_peak_flops("Tesla T4", "float16")[0] == pytest.approx(65e12)
    assert gpu_peak_flops("NVIDIA L40S") is None  # L40S is not an L4


def test_trial_peak_sums_gpus_and_falls_back_to_the_measured_cpu_peak():
    peak, reason = trial_peak(["NVIDIA A100-SXM4-80GB"] * 2, cpu_peak_flops=1e11)
    assert peak.flops == pytest.approx(312e12) and "x2" in peak.source and reason is None
    peak, reason = trial_peak([], cpu_peak_flops=1e11)
    assert peak.flops == 1e11 and "CPU" in peak.source
    assert trial_peak(["NVIDIA L40S"], 1e11) == (None, "no datasheet peak for NVIDIA L40S")
    assert trial_peak([], None) == (None, "no CPU peak measured for this run")


def test_cpu_matmul_peak_is_measured():
    peak = measure_cpu_matmul_peak(size=256, repeats=2)
    assert math.isfinite(peak) and peak > 1e8  # any CPU of this century does 0.1 GFLOP/s
