import pytest

from bench.plan.planner import PRESETS, get_preset
from bench.plan.suites import Suite, UnknownSuiteError, get_suite, list_suites, register_suite
from bench.specs import SpecError, TrialSpec


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


def test_baseline_suite_is_the_report_row_and_the_caffe_solver():
    suite = get_suite("baseline")
    assert "baseline" in list_suites()
    spec, caffe = suite.specs
    assert caffe.weight_decay == 5e-4 and caffe.lr_decay_steps == 10_000 and caffe.batch_size == 50
    assert caffe.model_options == {"lrn_after_conv3": False}
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


def test_transfer_suite_holds_the_reports_13_rows():
    suite = get_suite("transfer")
    templates = suite.all_templates()
    assert len(suite.specs) == 10 and suite.search.samples == 3 and len(templates) == 13
    by_model = {}
    for spec in templates:
        by_model.setdefault(spec.model, []).append(spec)
    assert [len(by_model[m]) for m in ("mobilenet_v3_large", "resnet50_v2", "efficientnet_v2_m")] == [4, 4, 5]
    mobilenet = {(s.model_options["frozen"], s.learning_rate): s.reference for s in by_model["mobilenet_v3_large"]}
    assert mobilenet == {("all", 5e-5): 0.7687, ("all", 1e-5): 0.7784, (10, 1e-5): 0.9314, (20, 1e-5): 0.9352}
    resnet = {s.learning_rate: s.reference for s in by_model["resnet50_v2"]}
    assert resnet == {1e-3: 0.6722, 1e-2: 0.4768, 5e-4: 0.8676, 5e-5: 0.9534}
    assert all(s.normalisation == "minus_one_to_one" for s in by_model["resnet50_v2"])
    assert all(s.normalisation == "none" for s in by_model["mobilenet_v3_large"] + by_model["efficientnet_v2_m"])
    assert all(s.model_options["weights"] == "imagenet" for s in templates)
    assert suite.search.learning_rate == (1e-5, 5e-5) and suite.search.latent_size[2] == 32
    assert suite.search.base.patience == 10


def test_transfer_smoke_budget_is_small_random_and_eager():
    from bench.plan.planner import RunRequest, plan_run

    request = RunRequest("transfer", "smoke", "", True, None, {}, False, {})
    plan = plan_run(request)
    for spec in plan.all_specs:
        assert spec.model_options["input_size"] == 64 and spec.model_options["weights"] is None
        assert spec.run_eagerly and spec.epochs == 2
    paper = plan_run(RunRequest("transfer", "paper", "", False, None, {}, False, {}))
    assert all(s.model_options["input_size"] == 227 and not s.run_eagerly for s in paper.specs)


def test_all_suite_holds_every_row_of_the_report():
    everything = {spec.name for spec in get_suite("all").all_templates()}
    for name in ("baseline", "transfer", "components", "improvements"):
        assert {spec.name for spec in get_suite(name).all_templates()} <= everything
    components = get_suite("components").specs
    assert [s.reference for s in components] == [0.9305, 0.9659, 0.8839, 0.9011, 0.9393]
    assert [s.normalisation for s in components[1:]] == ["per_image", "per_image", "minus_one_to_one", "per_channel"]
    assert components[2].momentum == 0.0
    pointwise, autoencoder = get_suite("improvements").specs
    assert autoencoder.policy == "autoencoder-extra" and autoencoder.reference == 0.73
    assert pointwise.model == "levi_hassner_pointwise"
