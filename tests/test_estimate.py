"""The up-front CPU estimate of a run's wall time."""

import pytest

import models
from bench.plan.estimate import (
    TRACE_SECONDS,
    TRACE_SECONDS_PER_LAYER,
    ModelCost,
    asha_rungs,
    count_layers,
    estimate_run,
    estimate_run_seconds,
    estimate_trial,
    format_duration,
    trial_seconds,
)
from bench.plan.planner import Scheduling
from bench.specs import TrialSpec


def spec(**changes):
    return TrialSpec(**{"name": "t", "model": "tiny_cnn", "epochs": 2, "batch_size": 16, **changes})


def test_trial_cost_grows_with_epochs_images_and_tracing():
    cost = ModelCost(layers=10, forward_flops=10**9, training_flops=3 * 10**9)
    base = trial_seconds(spec(), cost, 100, 50)
    assert trial_seconds(spec(epochs=4), cost, 100, 50) > base
    assert trial_seconds(spec(), cost, 200, 50) > base
    traced = estimate_trial(spec(), cost, 100, 50).trace_seconds
    assert traced == pytest.approx(TRACE_SECONDS + 10 * TRACE_SECONDS_PER_LAYER)
    assert estimate_trial(spec(run_eagerly=True), cost, 100, 50).trace_seconds == 0.0


def test_an_eager_step_of_a_frozen_backbone_costs_less_than_one_that_trains_whole():
    trains = ModelCost(layers=200, forward_flops=10**8, training_flops=3 * 10**8)
    frozen = ModelCost(layers=200, forward_flops=10**8, training_flops=10**8)
    eager = spec(run_eagerly=True)
    assert trial_seconds(eager, frozen, 100, 50) < trial_seconds(eager, trains, 100, 50)


def test_a_trial_pays_its_start_and_end_and_smoke_measures_cost_less():
    cost = ModelCost(layers=200, forward_flops=10**9, training_flops=3 * 10**9)
    full = estimate_trial(spec(policy="report"), cost, 100, 500)
    smoke = estimate_trial(spec(policy="report", smoke_measures=True), cost, 100, 500)
    assert full.epoch_seconds == smoke.epoch_seconds
    assert 0 < smoke.start_seconds < full.start_seconds  # fewer inference passes
    assert 0 < smoke.end_seconds < full.end_seconds  # 16 faces over-sampled, not 500
    parts = full.start_seconds + 2 * full.epoch_seconds + full.trace_seconds + full.end_seconds
    assert full.total_seconds == pytest.approx(parts)
    no_crop = estimate_trial(spec(policy="none"), cost, 100, 500)
    assert no_crop.end_seconds < smoke.end_seconds  # no over-sampled evaluation without crops


@pytest.mark.parametrize(
    ("budget", "grace", "reduction", "rungs"), [(6, 1, 3, (1, 3)), (6, 2, 4, (2,)), (1, 1, 3, ()), (27, 3, 3, (3, 9))]
)
def test_asha_rungs(budget, grace, reduction, rungs):
    assert asha_rungs(budget, grace, reduction) == rungs


def test_under_asha_the_line_gives_the_expected_and_the_most():
    specs = [spec(name=f"t{i}", epochs=6) for i in range(3)]
    estimate = estimate_run(specs, [(96, 48)] * 3, Scheduling(asha=True, num_gpus=0))
    assert estimate.trials["t0"].epochs == 6 and not estimate.trials["t0"].rungs  # the first: none to compare with
    assert estimate.trials["t1"].epochs == 1 and estimate.trials["t1"].rungs == (1, 3)  # its first rung
    assert "ASHA stopping trials at their first rung; at most" in estimate.line


def test_nested_backbone_layers_are_counted_through():
    network = models.create_model("mobilenet_v3_large", input_size=32)
    assert count_layers(network) > len(network.layers)
    assert count_layers(models.create_model("tiny_cnn")) == len(models.create_model("tiny_cnn").layers)


def test_run_estimate_divides_by_concurrency_and_builds_each_model_once():
    specs = [spec(name=f"t{i}") for i in range(4)]
    sizes = [(96, 48)] * 4
    one, two = estimate_run_seconds(specs, sizes, 1), estimate_run_seconds(specs, sizes, 2)
    assert one > two > 0


@pytest.mark.parametrize(("seconds", "text"), [(5, "5 s"), (65, "1 min 05 s"), (3700, "1 h 01 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_the_line_says_which_models_it_could_not_count_the_flops_of(monkeypatch):
    from bench.plan import estimate

    def no_flops(network, count=None):
        return float("nan")

    monkeypatch.setattr(estimate, "flops_or_nan", no_flops)
    line = estimate_run([spec()], [(96, 48)], Scheduling(num_gpus=0)).line
    assert line.endswith("no FLOP count for tiny_cnn: their layers counted, not their arithmetic)")
