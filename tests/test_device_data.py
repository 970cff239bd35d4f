"""The dataset on the device (data/device.py): the same batches as streaming, on every backend.

Runs in both CI legs (TensorFlow, and KERAS_BACKEND=jax).
"""

import itertools

import keras
import numpy as np
import pytest

from bench.specs import TrialSpec
from bench.trial.fit import build_device_trainer, build_trial_model, load_trial_data, run_trial
from data.device import DeviceImages, IndexBatches
from data.fit_input import FitInput
from tests.conftest import tiny_spec

pytestmark = pytest.mark.backends


def _gathered(layer: DeviceImages, positions: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(positions)))


@pytest.mark.parametrize("seed", [0, 7])
def test_both_paths_give_the_same_batch_for_each_seed_epoch_and_index(small_cache, seed):
    spec = tiny_spec("same", batch_size=16, train_limit=None, val_limit=None, seed=seed)
    data = load_trial_data(spec, small_cache)
    streamed_train, streamed_val = data.batches(spec.batch_size, spec.seed)
    index_train, index_val = data.index_batches(spec.batch_size, spec.seed)
    layer = DeviceImages(data.device_images())
    assert len(index_train) == len(streamed_train) > 2 and len(index_val) == len(streamed_val)
    for epoch in (0, 1, 5):
        for index in range(len(streamed_train)):
            images, labels = streamed_train.batch(epoch, index)
            positions, index_labels = index_train.batch(epoch, index)
            assert positions.dtype == np.int32
            np.testing.assert_array_equal(_gathered(layer, positions), images)
            np.testing.assert_array_equal(index_labels, labels)
    for index in range(len(streamed_val)):  # validation: after the training images, in order
        images, labels = streamed_val.batch(0, index)
        positions, index_labels = index_val.batch(0, index)
        np.testing.assert_array_equal(_gathered(layer, positions), images)
        np.testing.assert_array_equal(index_labels, labels)
    assert not np.array_equal(index_train.batch(0, 0)[0], index_train.batch(1, 0)[0])  # epochs differ


def test_device_images_hold_the_array_in_one_non_trainable_uint8_variable():
    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    layer = DeviceImages(images)
    assert [v.dtype for v in layer.non_trainable_weights] == ["uint8"] and not layer.trainable_weights
    assert layer.nbytes == images.nbytes
    np.testing.assert_array_equal(_gathered(layer, np.array([4, 0, 4], np.int32)), images[[4, 0, 4]])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((3, 4, 4, 3), np.float32), "uint8 images"),
        (np.zeros((3, 4, 4), np.uint8), "uint8 images"),
        (np.zeros((0, 4, 4, 3), np.uint8), "at least one image"),
    ],
)
def test_device_images_refuse_what_is_not_a_uint8_image_array(bad, message):
    with pytest.raises(ValueError, match=message):
        DeviceImages(bad)


def test_index_batches_carry_no_images_and_keep_the_loaders_checks():
    batches = IndexBatches(np.zeros(10, np.int32), 4, shuffle=True, seed=1, offset=100)
    positions, _ = batches.batch(0, 2)
    assert len(positions) == 2 and positions.min() >= 100  # the last, short batch; offset applied
    with pytest.raises(IndexError):
        batches.batch(0, 3)
    with pytest.raises(AttributeError, match="indices, not images"):
        _ = batches.image_side
    with pytest.raises(ValueError, match="batch_size"):
        IndexBatches(np.zeros(3, np.int32), 0, shuffle=False)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tf.data pipeline is the TensorFlow backend's")
def test_fit_is_given_int32_positions_only_on_tensorflow():
    import tensorflow as tf

    batches = IndexBatches(np.arange(10, dtype=np.int32) % 2, 4, shuffle=False)
    for dataset in (FitInput(batches, epochs=2).data, FitInput(batches).data):  # training, validation
        assert dataset.element_spec == (tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.int32))
        positions, labels = next(iter(dataset))
        assert positions.dtype == tf.int32 and positions.shape == (4,) and labels.dtype == tf.int32
        assert dataset.options().autotune.enabled is False


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tf.data pipeline is the TensorFlow backend's")
def test_validation_index_batches_are_epoch_0s_batches_again_and_again():
    """Each evaluation reads steps_per_epoch batches from a new iterator: the same batches each time."""
    batches = IndexBatches(np.arange(10, dtype=np.int32) % 2, 4, shuffle=False, offset=7)
    fit_input = FitInput(batches)
    assert fit_input.steps_per_epoch == len(batches) == 3
    expected = [batches.batch(0, index) for index in range(len(batches))] * 2
    served = list(itertools.islice(iter(fit_input.data), len(expected)))
    for (positions, labels), (expected_positions, expected_labels) in zip(served, expected, strict=True):
        np.testing.assert_array_equal(positions, expected_positions)
        np.testing.assert_array_equal(labels, expected_labels)


@pytest.mark.parametrize("size, batch_size", [(21, 4), (20, 4), (3, 8)])
def test_an_epoch_s_index_batches_made_at_once_are_its_batches_one_by_one(size, batch_size):
    batches = IndexBatches(np.arange(size, dtype=np.int32) % 2, batch_size, shuffle=True, seed=2, offset=7)
    for epoch in (0, 3):
        positions, labels = batches.epoch_batches(epoch)
        one_by_one = [batches.batch(epoch, index) for index in range(len(batches))]
        np.testing.assert_array_equal(positions, np.concatenate([p for p, _ in one_by_one]))
        np.testing.assert_array_equal(labels, np.concatenate([b for _, b in one_by_one]))
        assert list(batches.batch_sizes()) == [len(p) for p, _ in one_by_one]
        assert positions.dtype == np.int32


def test_the_device_trainer_shares_the_models_weights_and_optimizer(small_cache):
    spec = tiny_spec("share", data_on_device="on")
    data = load_trial_data(spec, small_cache)
    model, _ = build_trial_model(spec)
    trainer = build_device_trainer(model, data.device_images(), spec)
    assert trainer.optimizer is model.optimizer
    assert [id(v) for v in trainer.trainable_variables] == [id(v) for v in model.trainable_variables]
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    train, _ = data.index_batches(spec.batch_size, spec.seed)
    positions, labels = train.batch(0, 0)
    trainer.train_on_batch(positions, labels)
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))  # training it trains model


@pytest.mark.slow
def test_a_trial_trains_the_same_with_its_images_on_the_device_as_streamed(small_cache):
    """Same batches, same model, same seed: the same per-epoch accuracies either way."""
    reports = {}
    for where in ("off", "on"):
        reports[where] = []
        spec = tiny_spec("where", epochs=2, train_limit=96, val_limit=48, data_on_device=where)
        run_trial(spec, small_cache, reports[where].append)
    assert [r["data_on_device"] for r in reports["on"]] == ["on", "on"]
    assert [r["data_on_device"] for r in reports["off"]] == ["off", "off"]
    for streamed, on_device in zip(reports["off"], reports["on"], strict=True):
        assert on_device["val_accuracy"] == pytest.approx(streamed["val_accuracy"], abs=1e-6)
        assert on_device["train_loss"] == pytest.approx(streamed["train_loss"], rel=1e-4)
        assert on_device["backend"] == keras.backend.backend()


def test_auto_puts_the_smoke_split_on_a_cpu_device(small_cache):
    spec = TrialSpec(name="auto", model="tiny_cnn", epochs=1, train_limit=48, val_limit=24)
    reports = []
    run_trial(spec, small_cache, reports.append)
    (report,) = reports
    assert report["data_on_device"] == "on"  # a few MB against a quarter of the host's free memory
    assert report["precision"] == "fp32"  # no GPU here: auto is fp32
    assert report["jit"] in ("on", "off") and report["backend"] == keras.backend.backend()
