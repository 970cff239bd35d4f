"""bench.trial.gpu and gpu_sampler: the NVML sampler against a fake pynvml, a shared GPU's energy
attributed by SM utilisation or lease, discovery by index or UUID, and the manifest's driver facts."""

import math
import sys
import time

import pytest

from bench.trial.gpu import (
    NvmlUnavailable,
    driver_facts,
    gpu_uuids,
    nvml_devices,
    open_nvml,
    visible_gpu_selectors,
)
from bench.trial.gpu_sampler import GpuReading, NvmlSampler
from bench.trial.lease import GpuLease
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


def test_cuda_visible_devices_picks_the_trial_gpus_by_index_or_uuid(monkeypatch):
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # as trials run: CUDA's indices are NVML's
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
    ("lease", "shared"),
    [
        (None, None),  # nothing told the trial: cannot tell
        (GpuLease(("GPU-00000000",), 1.0), False),
        (GpuLease(("GPU-00000000",), 0.5), True),  # a fractional lease is shared, whatever NVML lists
    ],
)
@pytest.mark.parametrize("processes", [[(PID, 700)], [(PID, 700), (99, 5_000)]])
def test_shared_comes_from_the_lease_not_from_the_pids_nvml_lists(lease, shared, processes):
    clock = ManualClock()
    gpu = FakeGpu("NVIDIA L4", constant(50.0), counter(50.0), processes=processes)
    sampler = NvmlSampler(None, nvml=FakeNvml([gpu], clock), pid=PID, clock=clock, lease=lease)
    with sampler:
        clock.advance(1.0)
    assert sampler.record.shared is shared
    assert sampler.record.process_memory_bytes_max == 700  # this process's own, seen by its pid


def test_process_memory_is_unknown_where_nvml_does_not_list_this_pid():
    clock = ManualClock()
    sampler = sampler_for([FakeGpu("NVIDIA L4", constant(50.0), counter(50.0), processes=[(99, 5_000)])], clock)
    with sampler:
        clock.advance(1.0)
    assert sampler.record.process_memory_bytes_max is None and sampler.record.shared is None


# --------------------------------------------------------------------------- a shared GPU's energy

GPU_WATTS = 300.0


def packed_gpu(sm_util):
    """One GPU drawing 300 W (its counter says so), two trial processes' SM utilisation as given."""
    return FakeGpu("NVIDIA H200", constant(GPU_WATTS), counter(GPU_WATTS), uuid="GPU-h200", sm_util=sm_util)


def packed_readings(gpu, pids_and_shares, seconds=10.0, samples=5):
    """Each trial's lap readings over the same window of one GPU (all samplers read at the same times)."""
    clock = ManualClock()
    nvml = FakeNvml([gpu], clock)
    samplers = [
        NvmlSampler(None, nvml=nvml, pid=pid, clock=clock, lease=GpuLease(("GPU-h200",), share))
        for pid, share in pids_and_shares
    ]
    for sampler in samplers:
        sampler.start()
    for _ in range(samples):
        clock.advance(seconds / samples)
        for sampler in samplers:
            sampler.sample()
    return [sampler.lap() for sampler in samplers], GPU_WATTS * seconds


def test_a_packed_trial_takes_the_counter_by_its_share_of_the_sm_utilisation():
    # trial 100 keeps the SMs three times as busy as trial 200: it used three quarters of the energy
    readings, counter_delta = packed_readings(packed_gpu({100: 60.0, 200: 20.0}), [(100, 0.5), (200, 0.5)])
    first, second = readings
    assert first.energy_j == pytest.approx(0.75 * counter_delta) and first.energy_share == pytest.approx(0.75)
    assert second.energy_j == pytest.approx(0.25 * counter_delta)
    assert first.energy_source == second.energy_source == "counter*sm_share"
    assert first.shared and second.shared
    assert sum(reading.energy_j for reading in readings) == pytest.approx(counter_delta)


@pytest.mark.parametrize(
    ("sm_util", "shares"),
    [
        ({7001: 50.0, 7002: 50.0}, (0.5, 0.5)),  # NVML lists host pids: a container's own are not among them
        ({7001: 50.0, 7002: 50.0}, (0.25, 0.5)),
        (None, (0.5, 0.25)),  # no per-process accounting on this GPU
        ({}, (0.5, 0.5)),  # no process sampled in the window
    ],
)
def test_where_nvml_does_not_list_the_trial_its_lease_share_is_its_energy(sm_util, shares):
    readings, counter_delta = packed_readings(packed_gpu(sm_util), list(zip((100, 200), shares, strict=True)))
    for reading, share in zip(readings, shares, strict=True):
        assert reading.energy_j == pytest.approx(share * counter_delta)
        assert reading.energy_source == "counter*lease_share"
    assert sum(reading.energy_j for reading in readings) <= counter_delta * (1 + 1e-9)


@pytest.mark.parametrize(
    "sm_util",
    [{100: 90.0, 200: 5.0, 300: 5.0}, {100: 0.0, 200: 40.0}, {100: 33.0, 200: 33.0, 999: 34.0}],
)
def test_the_energies_of_one_gpus_trials_never_add_up_to_more_than_its_counter(sm_util):
    readings, counter_delta = packed_readings(packed_gpu(sm_util), [(pid, 1 / len(sm_util)) for pid in sm_util])
    assert sum(reading.energy_j for reading in readings) == pytest.approx(counter_delta)
    if 999 in sm_util:  # a process that is no trial of ours keeps its share
        mine = [reading.energy_j for reading in readings[:2]]
        assert sum(mine) == pytest.approx(0.66 * counter_delta)


def test_a_whole_gpu_lease_takes_the_whole_counter_and_laps_use_their_own_window():
    clock = ManualClock()
    gpu = packed_gpu({100: 80.0, 200: 20.0})
    sampler = NvmlSampler(None, nvml=FakeNvml([gpu], clock), pid=100, clock=clock, lease=GpuLease(("GPU-h200",)))
    with sampler:
        clock.advance(2.0)
        whole = sampler.lap()
    assert whole.energy_j == pytest.approx(2 * GPU_WATTS) and whole.energy_source == "counter" and not whole.shared
    # a shared lease: the second lap's share is the second window's, not the first's
    shared = NvmlSampler(None, nvml=FakeNvml([gpu], clock), pid=100, clock=clock, lease=GpuLease(("GPU-h200",), 0.5))
    shared.start()
    clock.advance(1.0)
    shared.sample()
    first = shared.lap()
    gpu.sm_util = {100: 25.0, 200: 75.0}
    clock.advance(1.0)
    second = shared.lap()
    shared.stop()
    assert first.energy_share == pytest.approx(0.8) and second.energy_share == pytest.approx(0.25)
    assert shared.record.energy_j == pytest.approx(GPU_WATTS * (0.8 + 0.25) / 2 * 2)


def test_the_lease_names_the_gpus_to_read_by_uuid():
    clock = ManualClock()
    gpus = [FakeGpu(f"gpu{i}", constant(100.0), counter(100.0), uuid=f"GPU-{i}") for i in range(3)]
    sampler = NvmlSampler(None, nvml=FakeNvml(gpus, clock), clock=clock, lease=GpuLease(("GPU-2",), 0.5))
    with sampler:
        clock.advance(1.0)
    assert sampler.record.gpu_names == ("gpu2",)
    cpu_trial = NvmlSampler(None, nvml=FakeNvml(gpus, clock), clock=clock, lease=GpuLease())
    with cpu_trial:
        clock.advance(1.0)
    assert cpu_trial.record.reason == "no GPU leased to this trial: it computes on the CPU"
    assert cpu_trial.record.energy_j is None and cpu_trial.record.gpu_names == ()


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


# --------------------------------------------------------------------------- CUDA's ids, NVML's GPUs


def test_an_index_is_nvmls_only_in_pci_bus_order_or_on_a_one_gpu_machine(monkeypatch):
    clock = ManualClock()
    gpus = [FakeGpu(f"gpu{i}", constant(1.0), uuid=f"GPU-{i}") for i in range(2)]
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert gpu_uuids(["1", "GPU-0"], FakeNvml(gpus, clock)) == ("GPU-1", "GPU-0")
    monkeypatch.delenv("CUDA_DEVICE_ORDER")  # CUDA's default: fastest first
    with pytest.raises(NvmlUnavailable, match="CUDA_DEVICE_ORDER is unset .* set CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        open_nvml(FakeNvml(gpus, clock), visible="1")
    assert open_nvml(FakeNvml(gpus, clock), visible="GPU-1").names == ("gpu1",)  # a UUID is a UUID in any order
    assert open_nvml(FakeNvml(gpus[:1], clock), visible="0").names == ("gpu0",)  # one GPU: index 0 is it
    sampler = NvmlSampler(None, nvml=FakeNvml(gpus, clock), visible_devices="1", clock=clock)
    with sampler:
        clock.advance(1.0)
    assert "CUDA_DEVICE_ORDER" in sampler.record.reason and sampler.record.energy_j is None
    assert gpu_uuids(["1"], FakeNvml(gpus, clock)) == ("1",)  # NVML cannot tell which: the id as given
    assert gpu_uuids(["0"], FakeNvml([], clock, fail_init=True)) == ("0",)
