"""benchmarks/epoch_cost.py's arithmetic: steady periods, and the fixed and proportional parts
found from epochs of three lengths (the measuring itself is `python -m benchmarks.harness epoch-cost`)."""

import pytest

from benchmarks.epoch_cost import EpochCost, TrialPeriods, measure_epoch_cost, steady_period


def test_a_steady_period_leaves_the_first_epochs_out():
    # epoch ends: the first epoch builds graphs, the second is still settling
    assert steady_period([5.0, 5.9, 6.1, 6.3, 6.5, 6.8]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no steady period"):
        steady_period([5.0, 5.9])


def _cost(fixed: float, proportional: float, noise: tuple[float, ...] = (0.0, 0.0, 0.0)) -> EpochCost:
    cost = EpochCost(pieces={"scores_s": 0.0001})
    for steps, extra in zip((1, 10, 100), noise, strict=True):
        for round_ in range(3):
            bare = 0.003 * steps * (1 + 0.01 * round_)
            cost.bare.setdefault(steps, []).append(bare)
            harness = fixed + (1 + proportional) * bare + 0.05 + extra  # validation: 0.05 s
            cost.harness.setdefault(steps, []).append(TrialPeriods(harness, 0.05, 0.004))
    return cost


def test_the_fixed_part_is_what_every_epoch_pays_whatever_its_length():
    ratio = _cost(fixed=0.015, proportional=0.04).ratio()
    assert ratio.value == pytest.approx(0.015) and ratio.spread == pytest.approx(0.0, abs=1e-9)
    assert ratio.detail["proportional_share"] == pytest.approx(0.04)
    assert ratio.detail["fixed_with_validation_s"] == pytest.approx(0.065)
    assert ratio.met and not _cost(fixed=0.025, proportional=0.0).ratio().met
    medians = _cost(fixed=0.015, proportional=0.0).medians(1)
    assert medians["added_s"] == pytest.approx(0.015 + 0.05)
    assert medians["rest_s"] == pytest.approx(0.015 - 0.004 - 0.0001)


def test_noise_on_a_long_epoch_barely_moves_the_fixed_part():
    # 30 ms of noise on the 0.3 s epochs (10%): weighted by 1 / period, the 1-step epochs decide
    fixed = _cost(fixed=0.015, proportional=0.0, noise=(0.0, 0.0, 0.03)).fit()[0]
    assert fixed == pytest.approx(0.015, abs=0.002)


def test_one_epoch_length_is_refused(small_cache):
    with pytest.raises(ValueError, match="at least two epoch lengths"):
        measure_epoch_cost(small_cache, rounds=1, steps=(10,))
