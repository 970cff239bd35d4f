"""One trial without Ray: data, model, fit, and the per-epoch reports."""

import math

import keras
import numpy as np
import pytest

from bench.scores import class_scores, parse_confusion
from bench.specs import TrialSpec
from bench.trial.fit import build_trial_model, run_trial
from bench.trial.measure import EPOCH_METRIC_KEYS
from data.adience import DatasetError, load_faces
from data.device import IndexBatches
from data.fit_input import FitInput
from data.loader import ArrayBatches
from data.splits import balanced_subset, split_rows
from tests.conftest import tiny_spec

pytestmark = pytest.mark.backends  # CI runs these on TensorFlow and again on JAX


def test_a_trials_epoch_costs_one_report_one_validation_graph_and_no_batch_hook(small_cache, monkeypatch):
    """What a trial adds to each epoch: one report, a validation pass that builds no new graph
    after the first epoch's, and no callback with a batch hook (Keras would then sync host and
    device after every step)."""
    from keras.src.utils.python_utils import is_default

    fitted_with, traces, traces_by_epoch, reports = [], [], [], []
    fit, test_step = keras.Model.fit, keras.Model.test_step

    def recording_fit(self, *args, **kwargs):
        fitted_with.extend(kwargs.get("callbacks") or [])
        return fit(self, *args, **kwargs)

    def counted_test_step(self, *args):  # (data), or on JAX (state, data)
        traces.append(1)  # a traced step runs this Python once per trace, not once per batch
        return test_step(self, *args)

    class TracesSoFar(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            traces_by_epoch.append(len(traces))

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    monkeypatch.setattr(keras.Model, "test_step", counted_test_step)
    run_trial(tiny_spec("async", epochs=3, val_limit=40), small_cache, reports.append, callbacks=[TracesSoFar()])
    assert fitted_with, "the trial called no fit"
    hooks = [f"on_{kind}batch_{when}" for kind in ("", "train_", "test_") for when in ("begin", "end")]
    overridden = [
        f"{type(callback).__name__}.{hook}"
        for callback in fitted_with
        for hook in hooks
        if not is_default(getattr(callback, hook))
    ]
    assert overridden == []
    assert [report["epoch"] for report in reports] == [1, 2, 3]
    assert 1 <= traces_by_epoch[0] <= 2 and traces_by_epoch == [traces_by_epoch[0]] * 3


def test_a_trial_reports_its_confusion_matrix_scores_and_single_image_latency(small_cache):
    reports = []
    run_trial(tiny_spec("scored", epochs=2, metric="balanced_accuracy"), small_cache, reports.append)
    first, second = reports
    for report in reports:
        matrix = parse_confusion(report["val_confusion"])
        assert matrix.shape == (2, 2) and matrix.sum() == report["val_images"]
        assert np.trace(matrix) / matrix.sum() == pytest.approx(report["val_accuracy"], abs=1e-6)
        scores = class_scores(matrix)
        assert report["val_balanced_accuracy"] == scores.balanced_accuracy
        assert report["val_macro_f1"] == scores.macro_f1
    # latency at batch 1: measured once, after epoch 1, like the throughput
    assert 0 < first["latency_ms_p50"] <= first["latency_ms_p99"]
    assert math.isnan(second["latency_ms_p50"]) and math.isnan(second["latency_ms_p99"])


@pytest.mark.slow
def test_run_trial_reports_every_epoch(small_cache):
    spec = TrialSpec(name="tiny", model="levi_hassner", epochs=2, batch_size=16, train_limit=48, val_limit=24)
    reports = []
    run_trial(spec, small_cache, reports.append)
    assert [r["epoch"] for r in reports] == [1, 2]
    for report in reports:
        assert tuple(report) == EPOCH_METRIC_KEYS
        assert 0 <= report["val_accuracy"] <= 1 and 0 <= report["train_accuracy"] <= 1
        assert report["params"] == 8_856_066
        assert report["train_images"] <= 48 and report["val_images"] <= 24
        assert 0 < report["train_seconds"] <= report["epoch_seconds"]
        assert math.isfinite(report["train_loss"]) and report["train_images_per_sec"] > 0
    assert reports[1]["elapsed_seconds"] > reports[0]["elapsed_seconds"]
    # inference is measured once, after epoch 1; GPU figures or the reason they are missing
    assert reports[0]["infer_images_per_sec"] > 0 and math.isnan(reports[1]["infer_images_per_sec"])
    gap = reports[1]["elapsed_seconds"] - reports[0]["elapsed_seconds"]  # the measurement is left out
    assert gap == pytest.approx(reports[1]["epoch_seconds"], abs=0.5)
    for report in reports:
        assert math.isfinite(report["energy_j"]) or report["nvml_reason"]
        assert math.isnan(report["flops_per_image"]) or report["flops_per_image"] > 0


def test_balanced_subset_keeps_both_classes_and_is_deterministic(small_synthetic):
    faces = load_faces(small_synthetic).faces
    first = balanced_subset(faces, 20, seed=1)
    assert len(first) <= 20 and set(first["gender"]) == {0, 1}
    assert first.equals(balanced_subset(faces, 20, seed=1))
    assert balanced_subset(faces, None, seed=1) is faces


def test_split_rows_holds_out_one_fold_counts_listed_duplicates_and_refuses_an_empty_fold(small_synthetic):
    faces = load_faces(small_synthetic).faces
    train, val = split_rows(faces, 4, (0, 1, 2, 3))
    assert set(val["fold"]) == {4} and set(train["fold"]) == {0, 1, 2, 3}
    listed_twice = faces.assign(listed=np.where(faces.index == train.index[0], 2, faces["listed"]))
    train_listed, val_listed = split_rows(listed_twice, 4, (0, 1, 2, 3), keep_duplicates=True)
    assert len(train_listed) == len(train) + 1 and len(val_listed) == len(val)
    with pytest.raises(DatasetError, match="validation fold 4"):
        split_rows(faces[faces["fold"] != 4], 4, (0, 1, 2, 3))


def test_trial_model_takes_cached_images_and_wraps_the_network():
    spec = TrialSpec(name="m", model="levi_hassner")
    model, network = build_trial_model(spec)
    assert tuple(model.input.shape) == (None, 256, 256, 3)
    assert network.count_params() == 8_856_066
    out = model.predict(np.zeros((1, 256, 256, 3), "float32"), verbose=0)
    assert out.shape == (1, 2)


def test_caffe_step_schedule_divides_the_learning_rate_by_ten_every_10k_steps():
    from bench.trial.fit import build_optimizer

    spec = TrialSpec(name="c", model="levi_hassner", learning_rate=1e-3, lr_decay_steps=10_000, weight_decay=5e-4)
    optimizer = build_optimizer(spec)
    schedule = optimizer._learning_rate  # the schedule object the optimizer was given
    assert float(schedule(9_999)) == pytest.approx(1e-3)
    assert float(schedule(10_000)) == pytest.approx(1e-4)
    assert float(schedule(25_000)) == pytest.approx(1e-5)
    assert optimizer.weight_decay == pytest.approx(5e-4)


class _LoggedArrayBatches(ArrayBatches):
    """Records which (epoch, batch) each read served."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = []

    def batch(self, epoch, index):
        self.served.append((epoch, index))
        return super().batch(epoch, index)


def _one_dense_model(side: int) -> keras.Model:
    inputs = keras.Input((side, side, 3), dtype="uint8")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("first_epoch", [0, 1])
def test_fit_input_serves_each_epoch_whole_from_its_own_seeded_order(first_epoch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, 40).astype(np.int32)
    batches = _LoggedArrayBatches(images, labels, 8, shuffle=True, seed=3)
    fit_input = FitInput(batches, epochs=3, first_epoch=first_epoch)
    assert fit_input.steps_per_epoch == 5
    model = _one_dense_model(32)
    history = model.fit(
        fit_input.data,
        steps_per_epoch=fit_input.steps_per_epoch,
        epochs=3,
        initial_epoch=first_epoch,
        verbose=0,
        shuffle=False,
    )
    fit_input.close()
    assert len(history.history["loss"]) == 3 - first_epoch
    # fit's epoch k read order k whole, in order; a restart at epoch 1 begins with order 1
    assert batches.served == [(epoch, index) for epoch in range(first_epoch, 3) for index in range(5)]
    assert not np.array_equal(batches.order(0), batches.order(1))


def test_fit_input_of_index_batches_is_each_epoch_s_batches_in_order():
    labels = (np.arange(21) % 2).astype(np.int32)
    batches = IndexBatches(labels, 4, shuffle=True, seed=5, offset=30)  # 6 batches, the last of 1
    fit_input = FitInput(batches, epochs=4, first_epoch=1)
    served = iter(fit_input.data)  # one iterator across the epochs, as fit keeps it with steps_per_epoch
    for epoch in (1, 2, 3):
        for index in range(fit_input.steps_per_epoch):
            positions, batch_labels = (keras.ops.convert_to_numpy(part) for part in next(served))
            expected_positions, expected_labels = batches.batch(epoch, index)
            np.testing.assert_array_equal(positions, expected_positions)
            np.testing.assert_array_equal(batch_labels, expected_labels)
    with pytest.raises(StopIteration):
        next(served)
    fit_input.close()


def test_fit_input_validation_repeats_one_order_its_batch_count_at_a_time():
    images = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    batches = ArrayBatches(images, np.zeros(10, np.int32), 4, shuffle=False)
    fit_input = FitInput(batches)
    # TensorFlow: the batches repeated, read 3 at a time (fit's validation_steps); else the PyDataset
    assert fit_input.steps_per_epoch == (3 if keras.backend.backend() == "tensorflow" else None)
    model = _one_dense_model(4)
    first, second = (model.evaluate(fit_input.data, steps=fit_input.steps_per_epoch, verbose=0) for _ in range(2))
    assert first == pytest.approx(second)  # each evaluation reads the same batches whole


@pytest.mark.parametrize("first_epoch", [-1, 4])
def test_fit_input_refuses_a_first_epoch_outside_the_run(first_epoch):
    batches = ArrayBatches(np.zeros((4, 4, 4, 3), np.uint8), np.zeros(4, np.int32), 2, shuffle=False)
    with pytest.raises(ValueError, match=r"first_epoch must be in \[0, 3\]"):
        FitInput(batches, epochs=3, first_epoch=first_epoch)


@pytest.mark.parametrize("index_batches", [False, True])
def test_fit_input_restored_after_the_last_epoch_trains_nothing(index_batches):
    labels = np.zeros(4, np.int32)
    if index_batches:
        batches = IndexBatches(labels, 2, shuffle=True)
    else:
        batches = _LoggedArrayBatches(np.zeros((4, 4, 4, 3), np.uint8), labels, 2, shuffle=True)
    fit_input = FitInput(batches, epochs=3, first_epoch=3)  # a checkpoint of epoch 3 of 3, restored
    assert list(fit_input.data) == []
    if not index_batches:
        assert batches.served == []


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tf.data pipeline is the TensorFlow backend's")
def test_fit_input_on_tensorflow_is_a_fixed_prefetch_without_autotuning():
    import tensorflow as tf

    images = np.zeros((10, 16, 16, 3), np.uint8)
    batches = ArrayBatches(images, np.zeros(10, np.int32), 4, shuffle=False)
    dataset = FitInput(batches, epochs=2).data
    assert isinstance(dataset, tf.data.Dataset)
    assert dataset.options().autotune.enabled is False
    assert int(dataset.cardinality()) == 6  # fit knows the run's length: 2 epochs of 3 batches
    first_images, first_labels = next(iter(dataset))
    assert first_images.dtype == tf.uint8 and first_images.shape == (4, 16, 16, 3)
    assert first_labels.dtype == tf.int32
