"""Balanced accuracy, macro-F1, per-class recall and the confusion matrix: the device-side matrix
and the figures made from it agree with scikit-learn on fixed predictions, bad input refused."""

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics

from bench.scores import class_scores, confusion_text, label_pairs, parse_confusion

# three classes, imbalanced; class 2 is never predicted
TRUE = np.array([0] * 12 + [1] * 5 + [2] * 3)
PREDICTED = np.array([0] * 10 + [1] * 2 + [1] * 3 + [0] * 2 + [0, 1, 1])


def test_the_figures_of_a_confusion_matrix_are_scikit_learns_on_the_predictions():
    matrix = metrics.confusion_matrix(TRUE, PREDICTED, labels=[0, 1, 2])
    scores = class_scores(matrix)
    assert scores.accuracy == pytest.approx(metrics.accuracy_score(TRUE, PREDICTED))
    assert scores.balanced_accuracy == pytest.approx(metrics.balanced_accuracy_score(TRUE, PREDICTED))
    assert scores.macro_f1 == pytest.approx(metrics.f1_score(TRUE, PREDICTED, average="macro", zero_division=0))
    np.testing.assert_allclose(scores.recall, metrics.recall_score(TRUE, PREDICTED, average=None, zero_division=0))
    # the figures an imbalanced split tells apart: accuracy 0.65, balanced accuracy 0.478, recall 10/12, 3/5, 0
    assert scores.accuracy == pytest.approx(13 / 20) and scores.balanced_accuracy == pytest.approx((10 / 12 + 0.6) / 3)


def test_a_class_the_split_lacks_has_no_recall_and_balanced_accuracy_averages_the_others():
    matrix = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])
    scores = class_scores(matrix)
    assert scores.recall[:2] == pytest.approx((0.8, 0.8)) and math.isnan(scores.recall[2])
    assert scores.balanced_accuracy == pytest.approx(0.8)
    empty = class_scores(np.zeros((2, 2)))
    assert math.isnan(empty.accuracy) and math.isnan(empty.balanced_accuracy)


def test_the_figures_agree_with_scikit_learn_on_random_matrices_with_missing_classes():
    """Computed from the matrix's sums, they are scikit-learn's on the pairs: classes never true,
    never predicted, or neither included."""
    random = np.random.default_rng(7)
    for trial in range(200):
        classes = int(random.integers(1, 6))
        matrix = random.integers(0, 6, size=(classes, classes)) * (random.random((classes, classes)) < 0.6)
        if trial % 3 == 0:
            matrix[random.integers(classes)] = 0  # a class the split lacks
        if trial % 4 == 0:
            matrix[:, random.integers(classes)] = 0  # a class never predicted
        actual, predicted = label_pairs(matrix)
        scores = class_scores(matrix)
        if actual.size == 0:
            assert math.isnan(scores.accuracy) and math.isnan(scores.macro_f1)
            continue
        labels = list(range(classes))
        assert scores.accuracy == pytest.approx(metrics.accuracy_score(actual, predicted))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn warns of a class the true labels lack
            balanced = metrics.balanced_accuracy_score(actual, predicted)
        assert scores.balanced_accuracy == pytest.approx(balanced)
        f1 = metrics.f1_score(actual, predicted, labels=labels, average="macro", zero_division=0)
        assert scores.macro_f1 == pytest.approx(f1)
        recall = metrics.recall_score(actual, predicted, labels=labels, average=None, zero_division=np.nan)
        np.testing.assert_allclose(scores.recall, recall)


def test_a_matrix_travels_as_json_text_and_bad_ones_are_refused():
    matrix = metrics.confusion_matrix(TRUE, PREDICTED)
    assert confusion_text(matrix) == "[[10, 2, 0], [2, 3, 0], [1, 2, 0]]"
    np.testing.assert_array_equal(parse_confusion(confusion_text(matrix)), matrix)
    actual, predicted = label_pairs(matrix)
    np.testing.assert_array_equal(metrics.confusion_matrix(actual, predicted), matrix)
    assert parse_confusion("") is None and parse_confusion(float("nan")) is None
    for bad, why in (([[1, 2, 3]], "square"), ([[1, -1], [0, 2]], "whole numbers"), ([[0.5, 1], [1, 1]], "whole")):
        with pytest.raises(ValueError, match=why):
            label_pairs(np.array(bad))


@pytest.mark.backends
@pytest.mark.parametrize("labels", ["indices", "soft one-hot"])
def test_the_device_side_matrix_counts_what_scikit_learn_counts(labels):
    import keras

    from bench.trial.confusion import ConfusionMatrix

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=len(TRUE)).astype("float32")
    probabilities[np.arange(len(TRUE)), PREDICTED] += 1.0  # the argmax is PREDICTED
    if labels == "indices":
        truth = TRUE.astype("int32")
    else:  # MixUp's labels: the argmax is the class
        truth = (0.7 * np.eye(3)[TRUE] + 0.3 * np.eye(3)[rng.integers(0, 3, len(TRUE))]).astype("float32")
        truth[np.arange(len(TRUE)), TRUE] += 0.01
    metric = ConfusionMatrix(3)
    for batch in (slice(0, 7), slice(7, 20)):  # accumulated over batches, as over a validation pass
        metric.update_state(truth[batch], probabilities[batch])
    expected = metrics.confusion_matrix(TRUE, PREDICTED, labels=[0, 1, 2])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(metric.result()), expected)
    metric.reset_state()
    assert keras.ops.convert_to_numpy(metric.result()).sum() == 0
    with pytest.raises(ValueError, match="at least one class"):
        ConfusionMatrix(0)


TOY_SUITE = """
name = "toy"
target_accuracy = 0.75
{metric}
[[trials]]
name = "majority"
model = "tiny_cnn"
[[trials]]
name = "even"
model = "tiny_cnn"
"""
# on 90 images of class 0 and 10 of class 1: one model says 0 for everything (accuracy 0.90,
# balanced accuracy 0.50), the other gets 80% of each class (accuracy 0.80, balanced 0.80)
TOY_MATRICES = {"majority": [[90, 0], [10, 0]], "even": [[72, 18], [2, 8]]}


def toy_ranking(tmp_path, suite_metric: str, flag: str | None = None) -> tuple[list[str], object]:
    from bench.plan.planner import RunRequest, plan_run
    from bench.report.answer import ranked_rows
    from bench.report.groups import groups_table
    from bench.report.results import TrialRecord, trials_table

    path = tmp_path / f"toy_{suite_metric}.toml"
    path.write_text(TOY_SUITE.format(metric=f'metric = "{suite_metric}"' if suite_metric else ""))
    fields = {"suite": str(path), "preset": "as-written", "data_root": "", "synthetic": True, "trials": None}
    plan = plan_run(RunRequest(**fields, overrides={}, asha=False, metric=flag))
    records = []
    for spec in plan.specs:
        matrix = np.array(TOY_MATRICES[spec.name])
        scores = class_scores(matrix)
        figures = {"val_accuracy": scores.accuracy, "val_balanced_accuracy": scores.balanced_accuracy}
        figures |= {"val_macro_f1": scores.macro_f1, "val_confusion": confusion_text(matrix)}
        epoch = {"epoch": 1, "train_loss": 0.5, "epoch_seconds": 3.0, "elapsed_seconds": 3.0, "train_images": 100}
        records.append(TrialRecord(spec=spec.replace(epochs=1), epochs=[{**epoch, **figures}]))
    trials = trials_table(records, target_accuracy=plan.suite.target_accuracy)
    ranked = ranked_rows(groups_table(trials), plan.goals, smoke=False)
    return [row.group for _, row, _ in ranked], trials.set_index("trial")


def test_a_suite_ranking_by_balanced_accuracy_ranks_an_imbalanced_set_otherwise(tmp_path):
    by_accuracy, trials = toy_ranking(tmp_path, "")
    assert by_accuracy == ["majority", "even"]
    assert trials.loc["majority", "best_score"] == pytest.approx(0.9)
    assert trials.loc["majority", "epochs_to_target"] == 1  # accuracy 0.90 reaches 0.75
    by_balanced, trials = toy_ranking(tmp_path, "balanced_accuracy")
    assert by_balanced == ["even", "majority"]
    assert set(trials["metric"]) == {"balanced_accuracy"} and trials.loc["majority", "best_score"] == 0.5
    assert np.isnan(trials.loc["majority", "epochs_to_target"])  # balanced accuracy 0.50 never reaches it
    assert trials.loc["majority", "val_class_recall"] == "[1.0, 0.0]"
    # --metric over the suite's
    assert toy_ranking(tmp_path, "balanced_accuracy", flag="accuracy")[0] == ["majority", "even"]
    assert toy_ranking(tmp_path, "", flag="macro_f1")[0] == ["even", "majority"]
