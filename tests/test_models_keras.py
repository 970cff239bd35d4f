"""Every keras.applications model by name (``keras:<Name>``), and a user's own models (--model-module)."""

import sys

import keras
import numpy as np
import pytest

import models
from bench.execute.progress import Progress
from bench.plan.estimate import TrialEstimate, report_seconds
from bench.plan.planner import RunRequest, plan_run
from data.transforms import NORMALISATIONS
from models.__main__ import main as models_main
from models.transfer import FAMILY_NORMALISATION, keras_applications

pytestmark = pytest.mark.backends


def test_every_keras_application_is_a_model_name_with_its_familys_normalisation():
    names = keras_applications()
    assert "keras:ConvNeXtTiny" in names and "keras:EfficientNetB0" in names and len(names) >= 35
    assert models.list_models("keras:*", resolvable=True) == names
    assert not models.list_models("keras:*")  # resolvable, not registered one by one
    expected = {
        "keras:ConvNeXtTiny": "none",
        "keras:EfficientNetB0": "none",
        "keras:MobileNetV3Small": "none",
        "keras:DenseNet121": "torch",
        "keras:ResNet50": "caffe",
        "keras:VGG16": "caffe",
        "keras:ResNet50V2": "minus_one_to_one",
        "keras:Xception": "minus_one_to_one",
    }
    for name, normalisation in expected.items():
        assert models.get_model_entry(name).normalisation == normalisation, name
    assert set(FAMILY_NORMALISATION.values()) <= set(NORMALISATIONS)


@pytest.mark.parametrize(
    ("family", "normalisation"), [(keras.applications.resnet, "caffe"), (keras.applications.densenet, "torch")]
)
def test_caffe_and_torch_normalisations_are_keras_preprocess_input(family, normalisation):
    images = np.random.default_rng(3).uniform(0, 255, size=(2, 8, 8, 3)).astype("float32")
    layer = NORMALISATIONS[normalisation].build(None, None)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(images)), family.preprocess_input(images.copy()), rtol=1e-5, atol=1e-4
    )


def test_a_keras_model_is_built_through_the_generic_transfer_builder():
    model = models.create_model("keras:MobileNetV3Small", input_size=32, latent_size=8, frozen="all")
    assert model.output.shape[-1] == 2 and model.get_layer("latent").units == 8
    assert not model.get_layer("backbone").trainable
    with pytest.raises(models.ModelOptionError, match="Input size must be at least 75x75"):
        models.create_model("keras:InceptionV3", input_size=40)
    with pytest.raises(models.ModelOptionError, match="frozen=9999 is more than"):
        models.create_model("keras:MobileNetV3Small", input_size=32, frozen=9999)
    with pytest.raises(models.UnknownModelError, match="did you mean keras:ConvNeXtTiny"):
        models.get_model_entry("keras:ConvNextTiny")


def test_models_all_lists_the_keras_names_without_building_them(capsys):
    assert models_main(["--all", "keras:Eff*"]) == 0
    out = capsys.readouterr().out
    assert "keras:EfficientNetB0" in out and "keras:EfficientNetV2S" in out and "| none" in out


def test_a_users_model_module_registers_on_import(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import keras\n"
        "from models import register_model\n"
        "@register_model('my_net', default_input_size=32, normalisation='minus_one_to_one')\n"
        "def my_net(input_size=32, num_classes=2):\n"
        "    inputs = keras.Input((input_size, input_size, 3))\n"
        "    x = keras.layers.GlobalAveragePooling2D()(inputs)\n"
        "    return keras.Model(inputs, keras.layers.Dense(num_classes, activation='softmax')(x))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    monkeypatch.setattr(models.registry, "_REGISTRY", dict(models.registry._REGISTRY))  # my_net leaves with the test
    request = RunRequest("selftest", "smoke", "", True, None, {}, False, model_modules=("my_models",))
    plan_run(request)
    assert models.get_model_entry("my_net").normalisation == "minus_one_to_one"
    with pytest.raises(models.ModelOptionError, match="--model-module no_such_module: cannot import it"):
        models.import_model_modules(["no_such_module"])


def test_time_left_weighs_each_trial_by_its_cost_per_epoch():
    lines = []
    budgets = {"tiny": 2, **{f"effnet{i}": 2 for i in range(5)}}
    estimates = {"tiny": epochs_only(1.0), **{f"effnet{i}": epochs_only(60.0) for i in range(5)}}
    progress = Progress(lines.append, budgets, estimates)
    for epoch in (1, 2):
        progress.epoch(
            "tiny",
            "tiny",
            {
                "epoch": epoch,
                "epoch_seconds": 1.2,
                "val_accuracy": 0.5,
                "train_accuracy": 0.5,
                "train_images_per_sec": 1.0,
            },
        )
    progress.completed("tiny", "tiny", 2, 0.5, "")
    # five EfficientNet trials of 2 epochs each at 60 s x the 1.2 the measured trial ran over its estimate
    assert progress.seconds_left() == pytest.approx(5 * 2 * 60 * 1.2 + report_seconds(6))
    assert Progress(lines.append, budgets, estimates, concurrency=2).seconds_left() is None  # nothing measured yet
    unestimated = Progress(lines.append, {"a": 3, "b": 3})
    unestimated.epoch(
        "a",
        "a",
        {"epoch": 1, "epoch_seconds": 10.0, "val_accuracy": 0.5, "train_accuracy": 0.5, "train_images_per_sec": 1.0},
    )
    assert unestimated.seconds_left() == pytest.approx(2 * 10 + 3 * 10)  # the mean measured epoch for b


def epochs_only(seconds: float, epochs: float = 2.0) -> TrialEstimate:
    return TrialEstimate(start_seconds=0.0, epoch_seconds=seconds, end_seconds=0.0, epochs=epochs)


def two_epochs(progress, name, seconds=10.0):
    for epoch in (1, 2):
        result = {"epoch": epoch, "epoch_seconds": seconds, "val_accuracy": 0.5, "train_accuracy": 0.5}
        progress.epoch(name, name, {**result, "train_images_per_sec": 1.0})


def test_estimated_trials_pay_their_start_and_end_scaled_by_how_finished_ones_compared():
    from tests.fake_nvml import ManualClock

    clock = ManualClock()
    estimates = {name: TrialEstimate(4.0, 10.0, 1.0, 2.0) for name in ("a", "b", "c")}
    progress = Progress(lambda line: None, {"a": 2, "b": 2, "c": 2}, estimates, clock=clock)
    progress.started("a", "a")
    clock.advance(30.0)  # 10 s outside its epochs: twice the 5 s estimated
    two_epochs(progress, "a")
    progress.completed("a", "a", 2, 0.5, "")
    # b and c: two 10 s epochs each and twice their 5 s estimated outside them, then the report
    assert progress.seconds_left() == pytest.approx(2 * (20 + 10) + report_seconds(3))
    progress.started("b", "b")
    progress.epoch(
        "b",
        "b",
        {"epoch": 1, "epoch_seconds": 10.0, "val_accuracy": 0.5, "train_accuracy": 0.5, "train_images_per_sec": 1.0},
    )
    # b: one epoch and its end (2 x 1 s); c as before
    assert progress.seconds_left() == pytest.approx(10 + 2 + 30 + report_seconds(3))
    progress.epoch(
        "b",
        "b",
        {"epoch": 2, "epoch_seconds": 10.0, "val_accuracy": 0.5, "train_accuracy": 0.5, "train_images_per_sec": 1.0},
    )
    assert progress.seconds_left() == pytest.approx(30 + report_seconds(3))  # b's end ran before its last report


def asha(seconds: float, rungs: tuple[int, ...]) -> TrialEstimate:
    return TrialEstimate(0.0, seconds, 0.0, float(rungs[0]), rungs=rungs)


def test_under_asha_a_trial_counts_its_first_rung():
    progress = Progress(lambda line: None, {"a": 6, "b": 6}, {"a": epochs_only(10.0, 6), "b": asha(10.0, (2, 4))})
    progress.started("a", "a")
    two_epochs(progress, "a")
    assert progress.seconds_left() == pytest.approx(4 * 10 + 2 * 10 + report_seconds(2))


def test_trials_not_yet_started_also_pay_what_finished_ones_spent_outside_their_epochs():
    from tests.fake_nvml import ManualClock

    clock = ManualClock()
    progress = Progress(lambda line: None, {"a": 2, "b": 2}, clock=clock)  # no estimate: a GPU run
    progress.started("a", "a")
    clock.advance(30.0)  # 10 s building the model, then two 10 s epochs
    for epoch in (1, 2):
        progress.epoch(
            "a",
            "a",
            {
                "epoch": epoch,
                "epoch_seconds": 10.0,
                "val_accuracy": 0.5,
                "train_accuracy": 0.5,
                "train_images_per_sec": 1.0,
            },
        )
    progress.completed("a", "a", 2, 0.5, "")
    assert progress.seconds_left() == pytest.approx(2 * 10 + 10)  # b: two epochs and its own 10 s outside them


def test_progress_lines_say_the_ranking_metric_where_it_is_not_accuracy():
    lines = []
    progress = Progress(lines.append, {"a": 3}, score_key="val_balanced_accuracy")
    result = {"epoch": 1, "epoch_seconds": 2.0, "val_accuracy": 0.9, "train_accuracy": 0.8}
    progress.epoch("a", "a", {**result, "val_balanced_accuracy": 0.55, "train_images_per_sec": 10.0})
    progress.completed("a", "a", 3, 0.55, "")
    assert "val_acc 0.9000  val_balanced_accuracy 0.5500  train_acc" in lines[0]
    assert lines[1] == "[a] finished: best val_balanced_accuracy 0.5500"
    plain = Progress(lines.append, {"a": 3})
    plain.epoch("a", "a", {**result, "train_images_per_sec": 10.0})
    plain.completed("a", "a", 3, 0.9, "")
    assert "val_balanced" not in lines[2] and lines[3] == "[a] finished: best val_acc 0.9000"


def test_under_asha_trials_not_started_count_what_the_stopped_ones_ran():
    budgets = {"first": 6, "b": 6, "c": 6}
    estimates = {"first": epochs_only(10.0, 6), "b": asha(10.0, (1, 3)), "c": asha(10.0, (1, 3))}
    progress = Progress(lambda line: None, budgets, estimates)
    for name in ("first", "b"):
        progress.started(name, name)
    two_epochs(progress, "b")  # past its first rung: ASHA let it on, to its next
    assert progress.seconds_left() == pytest.approx(6 * 10 + 1 * 10 + 1 * 10 + report_seconds(3))
    progress.epoch(
        "b",
        "b",
        {"epoch": 3, "epoch_seconds": 10.0, "val_accuracy": 0.5, "train_accuracy": 0.5, "train_images_per_sec": 1.0},
    )
    # at its next rung, ASHA yet to decide: counted as stopping there, as most do
    assert progress.seconds_left() == pytest.approx(6 * 10 + 1 * 10 + report_seconds(3))
    progress.completed("b", "b", 3, 0.5, "ASHA")  # stopped at epoch 3: c is now counted at 3
    assert progress.seconds_left() == pytest.approx(6 * 10 + 3 * 10 + report_seconds(3))


def test_a_traced_trials_first_epoch_counts_without_its_estimated_tracing():
    estimates = {"a": TrialEstimate(0.0, 1.0, 0.0, 3.0, trace_seconds=2.0)}
    progress = Progress(lambda line: None, {"a": 3}, estimates)
    progress.started("a", "a")
    result = {"epoch": 1, "epoch_seconds": 5.0, "val_accuracy": 0.5, "train_accuracy": 0.5}
    progress.epoch("a", "a", {**result, "train_images_per_sec": 1.0})
    assert progress.epoch_cost("a") == pytest.approx(3.0)
    assert progress.seconds_left() == pytest.approx(2 * 3.0 + report_seconds(1))
