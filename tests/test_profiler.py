"""bench.profiler: the NVML sampler against a fake pynvml, and each metric's definition."""

import math
import sys
import time

import pytest

from bench.profiler import (
    GpuReading,
    NvmlSampler,
    epochs_to_plateau,
    epochs_to_target,
    gpu_peak_flops,
    measure_cpu_matmul_peak,
    measure_inference,
    model_flops_utilisation,
    time_to_target,
    train_throughput,
    trial_peak,
    visible_gpu_selectors,
)
from tests.fake_nvml import FakeGpu, FakeNvml, ManualClock

PID = 4242


def constant(watts):
    return lambda t: watts


def counter(watts, offset_mj=5_000_000):
    """An energy counter (mJ) of a GPU drawing ``watts`` since long before t=0."""
    return lambda t: offset_mj + watts * t * 1000


def sampler_for(gpus, clock, **kwargs):
    kwargs.setdefault("visible_devices", None)
    return NvmlSampler(None, nvml=FakeNvml(gpus, clock), pid=PID, clock=clock, **kwargs)


# --------------------------------------------------------------------------- energy


def test_energy_is_the_delta_of_the_total_energy_counter():
    clock = ManualClock()
    # the counter says 250 W while sampled power says 200 W: the counter must win
    gpu = FakeGpu("NVIDIA H100 80GB HBM3", constant(200.0), counter(250.0), processes=[(PID, 3_000)])
    sampler = sampler_for([gpu], clock)
    with sampler:
        clock.advance(10.0)
    reading = sampler.record
    assert reading.energy_j == pytest.approx(2500.0)
    assert reading.energy_source == "counter"
    assert reading.power_w_mean == pytest.approx(200.0)
    assert reading.seconds == pytest.approx(10.0)
    assert reading.gpu_names == ("NVIDIA H100 80GB HBM3",) and reading.gpu_count == 1
    assert reading.reason is None
    assert sampler._nvml.shutdowns == 1


def test_unsupported_counter_falls_back_to_integrated_power():
    clock = ManualClock()
    gpu = FakeGpu("Tesla T4", lambda t: 100.0 + 20.0 * t, energy_counter_mj=None)  # 100 W -> 300 W over 10 s
    sampler = sampler_for([gpu], clock)
    sampler.start()
    for _ in range(4):
        clock.advance(2.5)
        sampler.sample()
    reading = sampler.stop()
    assert reading.energy_source == "integrated_power"
    assert reading.energy_j == pytest.approx(2000.0)  # trapezoids are exact on a linear ramp
    assert reading.power_w_mean == pytest.approx(200.0)
    assert reading.power_w_max == pytest.approx(300.0)


def test_laps_split_the_energy_and_add_up_to_the_whole():
    clock = ManualClock()
    sampler = sampler_for([FakeGpu("NVIDIA A100-SXM4-80GB", constant(300.0), counter(300.0))], clock)
    sampler.start()
    clock.advance(4.0)
    first = sampler.lap()
    clock.advance(6.0)
    second = sampler.lap()
    whole = sampler.stop()
    assert first.energy_j == pytest.approx(1200.0) and first.seconds == pytest.approx(4.0)
    assert second.energy_j == pytest.approx(1800.0) and second.seconds == pytest.approx(6.0)
    assert whole.energy_j == pytest.approx(3000.0)


def test_several_gpus_are_summed():
    clock = ManualClock()
    gpus = [
        FakeGpu("NVIDIA H100 80GB HBM3", constant(100.0), counter(100.0), util=20, memory_used=1_000, uuid="GPU-a"),
        FakeGpu("NVIDIA H100 80GB HBM3", constant(300.0), None, util=80, memory_used=3_000, uuid="GPU-b"),
    ]
    for gpu in gpus:
        gpu.processes = [(PID, 500)]
    sampler = sampler_for(gpus, clock)
    with sampler:
        clock.advance(10.0)
    reading = sampler.record
    assert reading.gpu_count == 2
    assert reading.energy_j == pytest.approx(1000.0 + 3000.0)
    assert reading.energy_source == "counter + integrated_power"
    assert reading.power_w_mean == pytest.approx(400.0)
    assert reading.gpu_util_mean == pytest.approx(50.0)
    assert reading.memory_used_bytes_max == 4_000
    assert reading.process_memory_bytes_max == 1_000


def test_cuda_visible_devices_picks_the_trial_gpus_by_index_or_uuid():
    clock = ManualClock()
    gpus = [FakeGpu(f"gpu{i}", constant(100.0 * (i + 1)), counter(100.0 * (i + 1)), uuid=f"GPU-{i}") for i in range(3)]
    for visible, names in (("2", ("gpu2",)), ("GPU-1,0", ("gpu1", "gpu0")), ("0,x,2", ("gpu0",))):
        sampler = sampler_for(gpus, clock, visible_devices=visible)
        with sampler:
            clock.advance(1.0)
        assert sampler.record.gpu_names == names, visible
    assert visible_gpu_selectors(None) is None and visible_gpu_selectors("") == []


# --------------------------------------------------------------------------- no GPU


def null_fields(reading: GpuReading):
    return [
        reading.energy_j,
        reading.power_w_mean,
        reading.gpu_util_mean,
        reading.memory_used_bytes_max,
        reading.process_memory_bytes_max,
        reading.shared,
    ]


@pytest.mark.parametrize(
    ("make_sampler", "reason"),
    [
        (
            lambda clock: NvmlSampler(
                None, nvml=FakeNvml([], clock, fail_init=True), visible_devices=None, clock=clock
            ),
            "NVML not available: NVML Shared Library Not Found",
        ),
        (lambda clock: NvmlSampler(None, nvml=FakeNvml([], clock), visible_devices=None, clock=clock), "no NVIDIA GPU"),
        (
            lambda clock: NvmlSampler(None, nvml=FakeNvml([FakeGpu("x", constant(1))], clock), visible_devices=""),
            "CUDA_VISIBLE_DEVICES hides every GPU",
        ),
        (
            lambda clock: NvmlSampler(None, nvml=FakeNvml([FakeGpu("x", constant(1))], clock), visible_devices="5"),
            "could not open the GPUs 5",
        ),
    ],
)
def test_without_nvml_or_gpu_every_field_is_null_with_the_reason(make_sampler, reason):
    clock = ManualClock()
    sampler = make_sampler(clock)
    with sampler:
        clock.advance(1.0)
        lap = sampler.lap()
    for reading in (lap, sampler.record):
        assert reason in reading.reason
        assert null_fields(reading) == [None] * 6
    report = lap.to_report()
    assert math.isnan(report["energy_j"]) and math.isnan(report["power_w"]) and reason in report["nvml_reason"]


def test_without_the_pynvml_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with NvmlSampler(None, visible_devices=None) as sampler:
        pass
    assert "nvidia-ml-py package (pynvml) is not installed" in sampler.record.reason
    assert null_fields(sampler.record) == [None] * 6


# --------------------------------------------------------------------------- sharing, process memory


@pytest.mark.parametrize(
    ("processes", "forced", "shared", "own_memory"),
    [
        ([(PID, 700)], False, False, 700),
        ([(PID, 700), (99, 5_000)], False, True, 700),
        ([(99, 5_000)], False, None, None),  # this process not seen: cannot tell
        ([(PID, 700)], True, True, 700),  # a fractional lease is shared whatever NVML sees
    ],
)
def test_shared_gpu_and_process_memory(processes, forced, shared, own_memory):
    clock = ManualClock()
    sampler = sampler_for(
        [FakeGpu("NVIDIA L4", constant(50.0), counter(50.0), processes=processes)], clock, shared=forced
    )
    with sampler:
        clock.advance(1.0)
    assert sampler.record.shared is shared
    assert sampler.record.process_memory_bytes_max == own_memory


def test_background_thread_samples_at_the_interval():
    gpu = FakeGpu("NVIDIA L4", constant(70.0), None)
    sampler = NvmlSampler(0.01, nvml=FakeNvml([gpu], time.monotonic), visible_devices=None)
    with sampler:
        time.sleep(0.3)
    assert sampler.record.samples >= 5
    assert sampler.record.energy_j == pytest.approx(70.0 * sampler.record.seconds, rel=0.2)


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        NvmlSampler(0)


# --------------------------------------------------------------------------- throughput


def test_train_throughput_reports_epoch_one_apart():
    first, steady = train_throughput([100, 100, 100], [10.0, 2.0, 3.0])
    assert first == pytest.approx(10.0)
    assert steady == pytest.approx(200 / 5.0)  # images over seconds, not the mean of rates
    first, steady = train_throughput([100], [4.0])
    assert first == pytest.approx(25.0) and math.isnan(steady)
    with pytest.raises(ValueError, match="2 image counts but 1 durations"):
        train_throughput([1, 2], [1.0])


def test_inference_timing_leaves_warm_up_out():
    clock = ManualClock()
    calls = []

    def run_batch():
        calls.append(clock.now)
        clock.advance(5.0 if len(calls) == 1 else 0.25)  # the first call traces the graph

    timing = measure_inference(run_batch, 32, warmup_batches=2, min_batches=3, min_seconds=1.0, clock=clock)
    assert timing.batches == 4 and len(calls) == 6
    assert timing.seconds == pytest.approx(1.0)
    assert timing.images_per_sec == pytest.approx(4 * 32 / 1.0)


# --------------------------------------------------------------------------- convergence

CURVE = [0.50, 0.70, 0.81, 0.79, 0.845, 0.848, 0.85]
ELAPSED = [12.0, 20.0, 28.0, 36.0, 44.0, 52.0, 60.0]


def test_epochs_to_target_is_the_first_epoch_at_or_above_it():
    assert epochs_to_target(CURVE, 0.80) == 3
    assert epochs_to_target(CURVE, 0.81) == 3  # >=, not >
    assert epochs_to_target(CURVE, 0.90) is None
    assert epochs_to_target([math.nan, 0.9], 0.8) == 2


def test_epochs_to_plateau_is_the_first_epoch_within_half_a_point_of_the_best():
    assert epochs_to_plateau(CURVE) == 5  # best 0.85; 0.845 is within 0.005
    assert epochs_to_plateau([0.6, 0.6, 0.6]) == 1
    assert epochs_to_plateau([]) is None


def test_time_to_target_is_the_wall_time_at_that_epoch():
    assert time_to_target(CURVE, ELAPSED, 0.80) == 28.0
    assert time_to_target(CURVE, ELAPSED, 0.99) is None


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
