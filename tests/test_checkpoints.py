"""Checkpoints: a restored trial continues where it stopped, on the batches it would have seen."""

import math
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from bench.plan.planner import Scheduling
from bench.specs import SpecError
from bench.trial import checkpoints
from bench.trial.checkpoints import (
    EVERY_EPOCH,
    CheckpointError,
    CheckpointRule,
    TrialState,
    load_checkpoint,
    save_checkpoint,
    scratch_folder,
    state_bytes,
)
from bench.trial.fit import build_trial_model, run_trial
from tests.conftest import tiny_spec


def _compiled_tiny_model(seed: int):
    keras.utils.set_random_seed(seed)
    model, _ = build_trial_model(tiny_spec("c"))
    return model


def _one_step(model, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (4, 256, 256, 3)).astype("float32")
    return model.train_on_batch(images, np.array([0, 1, 0, 1]), return_dict=True)["loss"]


def test_a_restored_model_and_optimizer_hold_every_saved_variable(tmp_path):
    saved = _compiled_tiny_model(1)
    _one_step(saved)  # the optimizer has moments and a step count to save
    state = TrialState(epoch=3, attempt=1, origin=123.0, excluded_seconds=4.5, patience_best=0.7, patience_best_epoch=2)
    save_checkpoint(saved, state, tmp_path / "ck")
    restored = _compiled_tiny_model(2)  # other initial weights
    assert load_checkpoint(restored, tmp_path / "ck") == state
    for mine, theirs in zip(saved.variables, restored.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))
    for mine, theirs in zip(saved.optimizer.variables, restored.optimizer.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))
    # the next step of both is the same step
    assert _one_step(saved, seed=5) == pytest.approx(_one_step(restored, seed=5), rel=1e-5)


def test_a_checkpoint_of_another_model_or_no_checkpoint_is_refused(tmp_path):
    saved = _compiled_tiny_model(1)
    save_checkpoint(saved, TrialState(epoch=1), tmp_path / "ck")
    keras.utils.set_random_seed(1)
    other, _ = build_trial_model(tiny_spec("c", model="levi_hassner"))
    with pytest.raises(CheckpointError, match="taken from another model"):
        load_checkpoint(other, tmp_path / "ck")
    with pytest.raises(CheckpointError, match="no readable trial checkpoint"):
        load_checkpoint(saved, tmp_path / "missing")
    (tmp_path / "ck" / "trial.json").write_text('{"format": 99}')
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(saved, tmp_path / "ck")


def _run(spec, cache, folder: Path, **options) -> list[dict]:
    """run_trial's reports, each checkpoint copied to folder/<epoch> (the reporter removes its own)."""
    reports = []

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        if checkpoint is not None:
            shutil.copytree(checkpoint, folder / str(metrics["epoch"]))

    run_trial(spec, cache, report, **options)
    return reports


@pytest.mark.slow
def test_a_trial_restored_from_epoch_2_continues_as_if_never_stopped(small_cache, tmp_path):
    spec = tiny_spec("resumed", epochs=4, patience=3)
    # every epoch: these epochs last a second, where the rule's interval and share would skip some
    whole = _run(spec, small_cache, tmp_path / "whole", checkpoints=EVERY_EPOCH)
    assert [r["epoch"] for r in whole] == [1, 2, 3, 4]
    assert sorted(int(p.name) for p in (tmp_path / "whole").iterdir()) == [1, 2, 3, 4]
    assert all(r["checkpoint_seconds"] > 0 for r in whole)
    every_second = CheckpointRule(every=2, min_interval_s=0.0, max_share=math.inf)
    resumed = _run(
        spec, small_cache, tmp_path / "resumed", checkpoints=every_second, restore_from=tmp_path / "whole" / "2"
    )
    assert [r["epoch"] for r in resumed] == [3, 4]
    assert [r["attempt"] for r in resumed] == [2, 2]
    # the same weights, optimizer and batches: the same losses and accuracies as the run that went on
    for went_on, came_back in zip(whole[2:], resumed, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert came_back[key] == pytest.approx(went_on[key], rel=1e-4, abs=1e-6), key
    # time-to-target counts from the first attempt's start, through the restart
    assert resumed[0]["elapsed_seconds"] > whole[1]["elapsed_seconds"]
    assert math.isnan(resumed[0]["checkpoint_seconds"]) and resumed[1]["checkpoint_seconds"] > 0
    # restored from its last epoch's checkpoint (a retry of a trial lost after it): nothing left to train
    assert _run(spec, small_cache, tmp_path / "after", restore_from=tmp_path / "whole" / "4") == []
    # a checkpoint allowed no share of the time: the first (its cost unknown), then none
    frugal = _run(spec, small_cache, tmp_path / "frugal", checkpoints=CheckpointRule(min_interval_s=0.0, max_share=0.0))
    assert [int(p.name) for p in (tmp_path / "frugal").iterdir()] == [1]
    assert [math.isnan(r["checkpoint_seconds"]) for r in frugal] == [False, True, True, True]


def test_a_checkpoint_is_due_every_nth_epoch_once_its_interval_passed_and_within_its_share():
    rule = CheckpointRule(every=1, min_interval_s=60.0, max_share=0.02)
    assert not rule.due(1, seconds_since_last=40.0, last_cost=0.0)  # within the interval
    assert rule.due(2, seconds_since_last=80.0, last_cost=0.0)  # the first, its cost unknown
    assert rule.due(3, seconds_since_last=100.0, last_cost=2.0)  # 2% of the time since the last
    assert not rule.due(3, seconds_since_last=80.0, last_cost=2.0)  # 2.5%: wait for more epochs
    every_second = CheckpointRule(every=2, min_interval_s=0.0)
    assert [e for e in range(1, 7) if every_second.due(e, 100.0, 0.1)] == [2, 4, 6]
    assert not any(CheckpointRule(every=0).due(e, 1e6, 0.0) for e in range(1, 7))  # 0: never
    assert all(EVERY_EPOCH.due(e, 0.5, 10.0) for e in range(1, 7))


def test_the_run_s_checkpoint_rule_and_its_bad_values():
    assert Scheduling().checkpoint_rule == CheckpointRule()  # every epoch, at most once a minute
    assert Scheduling(checkpoint_interval=0).checkpoint_rule.min_interval_s == 0.0
    assert Scheduling(checkpoint_every=0).checkpoint_rule is None
    # the exported model is the best epoch's: every epoch checkpoints
    assert Scheduling(save_models=True, checkpoint_interval=600).checkpoint_rule == EVERY_EPOCH
    for bad in (-1.0, math.inf, math.nan, True, "60"):
        with pytest.raises(SpecError, match="checkpoint_interval"):
            Scheduling(checkpoint_interval=bad)


def test_a_checkpoint_is_written_in_memory_where_there_is_room_and_on_disk_otherwise(tmp_path, monkeypatch):
    model = _compiled_tiny_model(1)
    _one_step(model)
    saved = save_checkpoint(model, TrialState(epoch=1), tmp_path / "ck")
    written = (saved / checkpoints.STATE_FILE).stat().st_size
    assert state_bytes(model) < written < 1.15 * state_bytes(model)  # the arrays, and the .npz's headers
    memory = tmp_path / "shm"
    memory.mkdir()
    assert scratch_folder(model, memory).parent == memory
    assert scratch_folder(model, tmp_path / "no-such-tmpfs").parent == Path(tempfile.gettempdir())
    small = shutil.disk_usage(memory)._replace(free=state_bytes(model))  # room, but not twice the size
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: small)
    assert scratch_folder(model, memory).parent == Path(tempfile.gettempdir())
