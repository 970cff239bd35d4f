"""bench.trial.mfu: datasheet peaks by GPU name and precision (MIG slices too), the measured CPU peak, and MFU."""

import math

import pytest

from bench.trial.mfu import device_peak, measure_cpu_matmul_peak, model_flops_utilisation, trial_peak

# --------------------------------------------------------------------------- MFU


def test_mfu_is_training_flops_over_the_peak():
    assert model_flops_utilisation(3e9, 100.0, 1e12) == pytest.approx(0.3)
    assert model_flops_utilisation(None, 100.0, 1e12) is None
    assert model_flops_utilisation(math.nan, 100.0, 1e12) is None
    assert model_flops_utilisation(3e9, 100.0, None) is None


# NVIDIA's datasheets, dense: (fp32 as TF32 where the GPU has tensor cores for it, bf16, fp16)
DATASHEET = [
    ("NVIDIA H100 80GB HBM3", 494.7, 989.4, 989.4),
    ("NVIDIA H100 PCIe", 378, 756, 756),
    ("NVIDIA H100 NVL", 417.5, 835.5, 835.5),
    ("NVIDIA H200", 494.7, 989.4, 989.4),
    ("NVIDIA A100-SXM4-80GB", 156, 312, 312),
    ("NVIDIA A100 80GB PCIe", 156, 312, 312),
    ("NVIDIA L4", 60, 121, 121),
    ("Tesla V100-SXM2-16GB", 15.7, None, 125),  # no TF32: the FP32 peak; no bf16 tensor cores
    ("Tesla V100-PCIE-32GB", 14, None, 112),
    ("Tesla T4", 8.1, None, 65),
]


@pytest.mark.parametrize(("name", "fp32", "bf16", "fp16"), DATASHEET)
def test_gpu_peaks_by_device_name_and_precision(name, fp32, bf16, fp16):
    for precision, tflops in (("fp32", fp32), ("bf16", bf16), ("fp16", fp16)):
        peak, reason = device_peak(name, precision)
        if tflops is None:
            assert peak is None and f"no {precision} tensor cores" in reason
            continue
        assert peak.flops == pytest.approx(tflops * 1e12) and reason is None
        assert "datasheet" in peak.source


def test_the_precision_a_trial_records_is_the_one_its_peak_is_taken_in():
    # a bf16 trial (auto on an H100) against the bf16 peak, not TF32's: MFU would read 2x too high
    assert trial_peak(["NVIDIA H100 80GB HBM3"], None, "bf16")[0].flops == pytest.approx(989.4e12)
    assert trial_peak(["NVIDIA H100 80GB HBM3"], None, "fp32")[0].flops == pytest.approx(494.7e12)
    for other_spelling in ("bfloat16", "float16", "mixed_bfloat16", "auto"):
        with pytest.raises(ValueError, match="expected one of fp32, bf16, fp16"):
            device_peak("NVIDIA H100 80GB HBM3", other_spelling)
    assert trial_peak(["NVIDIA H100 80GB HBM3"], None, None) == (
        None,
        "the trial recorded no precision to take a GPU peak for",
    )


@pytest.mark.parametrize(
    ("name", "bf16_tflops", "share"),
    [
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 989.4 / 7, "1/7"),
        ("NVIDIA H200 MIG 3g.71gb", 989.4 * 3 / 7, "3/7"),
        ("NVIDIA A100-SXM4-40GB MIG 7g.40gb", 312.0, "7/7"),
        ("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb", 312.0 / 7, "1/7"),  # one compute slice of a 3g instance
        ("NVIDIA A30 MIG 2g.12gb", 165.0 / 2, "2/4"),
    ],
)
def test_a_mig_slice_gets_its_share_of_the_gpus_sms(name, bf16_tflops, share):
    peak, reason = device_peak(name, "bf16")
    assert peak.flops == pytest.approx(bf16_tflops * 1e12) and reason is None
    assert share in peak.source and "MIG" in peak.source


def test_a_mig_slice_of_a_gpu_without_a_known_split_reads_na_with_the_reason():
    assert device_peak("NVIDIA L4 MIG 1g.6gb", "bf16") == (
        None,
        "NVIDIA L4 MIG 1g.6gb: no MIG slice share known for L4",
    )


def test_unknown_gpus_have_no_peak():
    assert device_peak("NVIDIA L40S", "fp32") == (None, "no datasheet peak for NVIDIA L40S")  # L40S is not an L4


def test_trial_peak_sums_gpus_and_falls_back_to_the_measured_cpu_peak():
    peak, reason = trial_peak(["NVIDIA A100-SXM4-80GB"] * 2, cpu_peak_flops=1e11, precision="fp32")
    assert peak.flops == pytest.approx(312e12) and "x2" in peak.source and reason is None
    peak, reason = trial_peak([], cpu_peak_flops=1e11, precision="fp32")
    assert peak.flops == 1e11 and "CPU" in peak.source
    assert trial_peak(["NVIDIA L40S"], 1e11, "bf16") == (None, "no datasheet peak for NVIDIA L40S")
    assert trial_peak([], None, "fp32") == (None, "no CPU peak measured for this run")


def test_cpu_matmul_peak_is_measured():
    peak = measure_cpu_matmul_peak(size=256, repeats=2)
    assert math.isfinite(peak) and peak > 1e8  # any CPU of this century does 0.1 GFLOP/s
