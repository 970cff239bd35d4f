"""The up-front CPU estimate of a run's wall time."""

import pytest

import models
from bench.plan.estimate import (
    TRACE_SECONDS_PER_LAYER,
    ModelCost,
    count_layers,
    estimate_run_seconds,
    format_duration,
    trial_seconds,
)
from bench.specs import TrialSpec


def spec(**changes):
    return TrialSpec(**{"name": "t", "model": "tiny_cnn", "epochs": 2, "batch_size": 16, **changes})


def test_trial_cost_grows_with_epochs_images_and_tracing():
    cost = ModelCost(layers=10, forward_flops=10**9, training_flops=3 * 10**9)
    base = trial_seconds(spec(), cost, 100, 50)
    assert trial_seconds(spec(epochs=4), cost, 100, 50) > base
    assert trial_seconds(spec(), cost, 200, 50) > base
    assert base - trial_seconds(spec(run_eagerly=True), cost, 100, 50) == pytest.approx(10 * TRACE_SECONDS_PER_LAYER)


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
