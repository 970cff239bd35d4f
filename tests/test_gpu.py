"""bench.trial.gpu: the NVML sampler against a fake pynvml, discovery and the manifest's driver facts."""

import math
import sys
import time

import pytest

from bench.trial.gpu import (
    GpuReading,
    NvmlSampler,
    NvmlUnavailable,
    driver_facts,
    nvml_devices,
    open_nvml,
    visible_gpu_selectors,
)
from bench.trial.measure import gpu_report
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
    report = gpu_report(lap)
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


# --------------------------------------------------------------------------- opening NVML


def test_nvml_is_opened_and_shut_down_once_per_use():
    clock = ManualClock()
    nvml = FakeNvml([FakeGpu("NVIDIA L4", constant(1.0), uuid="GPU-a"), FakeGpu("Tesla T4", constant(1.0))], clock)
    with nvml_devices(nvml, visible="GPU-a") as devices:
        assert devices.names == ("NVIDIA L4",) and nvml.initialised == 1 and nvml.shutdowns == 0
    assert nvml.shutdowns == 1
    with pytest.raises(NvmlUnavailable, match="NVML not available: NVML Shared Library Not Found"):
        open_nvml(FakeNvml([], clock, fail_init=True), visible=None)
    broken = FakeNvml([], clock)
    with pytest.raises(NvmlUnavailable, match="could not open the GPUs 3"):
        open_nvml(broken, visible="3")
    assert broken.shutdowns == 1  # initialised, so shut down again before the error


def test_driver_facts_come_from_nvml_or_say_why():
    facts, reason = driver_facts(FakeNvml([FakeGpu("NVIDIA L4", constant(1.0))], ManualClock()))
    assert facts["nvidia_driver"] == "550.54.15" and facts["cuda_driver"] == "12.4" and reason is None
    facts, reason = driver_facts(FakeNvml([], ManualClock(), fail_init=True))
    assert facts == {} and "NVML Shared Library Not Found" in reason
