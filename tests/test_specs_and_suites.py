import pytest

from bench.specs import PRESETS, SpecError, TrialSpec, get_preset
from bench.suites import Suite, UnknownSuiteError, get_suite, list_suites, register_suite


def make_spec(**changes):
    return TrialSpec(**{"name": "t", "model": "levi_hassner", **changes})


def test_flat_dict_round_trip():
    spec = make_spec(model_options={"input_size": 227, "dropout": 0.4}, patience=3, reference=0.9, train_limit=10)
    flat = spec.to_dict()
    assert flat["model.input_size"] == 227 and flat["model.dropout"] == 0.4
    assert "model_options" not in flat
    assert all(not isinstance(value, dict) for value in flat.values())
    assert TrialSpec.from_dict(flat) == spec


def test_from_dict_refuses_unknown_fields():
    flat = make_spec().to_dict()
    flat["learning_rat"] = 0.1
    with pytest.raises(SpecError, match="unknown TrialSpec fields: learning_rat"):
        TrialSpec.from_dict(flat)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"momentum": 1.0}, "momentum must be in"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"policy": "zoom"}, "unknown policy"),
        ({"normalisation": "minmax"}, "unknown normalisation"),
        ({"val_fold": 7}, "val_fold must be 0..4"),
        ({"train_folds": (0, 4)}, "both a training and the validation fold"),
        ({"patience": 0}, "patience must be an integer >= 1"),
        ({"reference": 93.0}, "reference must be an accuracy"),
        ({"name": "a b/c"}, "name must be"),
    ],
)
def test_invalid_specs_are_refused_with_the_field_named(changes, message):
    with pytest.raises(SpecError, match=message):
        make_spec(**changes)


def test_unknown_model_is_refused_with_a_suggestion():
    with pytest.raises(SpecError, match="did you mean levi_hassner"):
        TrialSpec(name="t", model="levi_hasner")


def test_specs_are_frozen():
    with pytest.raises(AttributeError):
        make_spec().epochs = 3


def test_presets():
    spec = make_spec(epochs=300)
    smoke = get_preset("smoke").apply(spec)
    assert smoke.epochs == PRESETS["smoke"].epochs and smoke.train_limit == PRESETS["smoke"].train_limit
    assert get_preset("paper").apply(spec).epochs == 300
    with pytest.raises(SpecError, match="valid: smoke, paper"):
        get_preset("fast")


def test_baseline_suite_is_the_report_row():
    suite = get_suite("baseline")
    assert "baseline" in list_suites()
    (spec,) = suite.specs
    assert spec.model == "levi_hassner" and spec.optimizer == "sgd" and spec.momentum == 0.9
    assert spec.normalisation == "per_image" and spec.policy == "report"
    assert spec.reference == pytest.approx(0.9498)


def test_unknown_suite_names_the_valid_ones():
    with pytest.raises(UnknownSuiteError, match="valid suites: .*baseline"):
        get_suite("baselin")


def test_suites_refuse_duplicate_trial_names_and_double_registration():
    with pytest.raises(ValueError, match="repeats trial names: t"):
        Suite("dup", "", (make_spec(), make_spec()))
    with pytest.raises(ValueError, match="already registered"):
        register_suite(get_suite("baseline"))
