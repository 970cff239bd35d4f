"""Suites users write: a TOML file loads into a Suite, malformed files are one line and exit 2."""

import sys
import textwrap

import pytest

import models
from bench.plan.planner import RunRequest, default_preset, plan_run
from bench.plan.suite_files import SuiteFileError, load_suite_file
from bench.run import main
from bench.specs import TrialSpec
from tests.conftest import REPO_ROOT, run_cli
from tests.image_folders import write_image_folder

GOOD = """
name = "mine"
description = "two backbones"
target_accuracy = 0.75
[goals]
accuracy = 0.8
time = 600
params = 5e6
[[trials]]
name = "small"
model = "keras:MobileNetV3Small"
model_options = { input_size = 32, latent_size = 16 }
optimizer = "adam"
learning_rate = 1e-3
momentum = 0.0
epochs = 3
train_folds = [0, 1, 2]
[[trials]]
name = "tiny"
model = "tiny_cnn"
[search]
name = "tiny_search"
model = "tiny_cnn"
learning_rate = [1e-4, 1e-2]
samples = 2
[preset.smoke]
epochs = 1
train_limit = 16
eager = true
"""


def write(tmp_path, text: str, name: str = "suite.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_suite_file_loads_into_a_suite(tmp_path):
    suite = load_suite_file(write(tmp_path, GOOD))
    assert suite.name == "mine" and suite.target_accuracy == 0.75
    small, tiny = suite.specs
    assert small.model == "keras:MobileNetV3Small" and small.model_options == {"input_size": 32, "latent_size": 16}
    assert small.train_folds == (0, 1, 2) and small.normalisation == "none"  # the family's, from the registry
    assert tiny.optimizer == "sgd"  # TrialSpec's defaults fill the rest
    assert suite.search.samples == 2 and suite.search.learning_rate == (1e-4, 1e-2)
    assert suite.smoke.epochs == 1 and suite.smoke.train_limit == 16 and suite.smoke.eager
    goals = suite.goals(synthetic=True)
    assert (goals.accuracy, goals.time, goals.params) == (0.8, 600.0, 5e6)


def test_a_planned_suite_file_is_named_absolutely_and_takes_its_smoke_preset(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    request = RunRequest("suite.toml", "smoke", "", True, None, {}, False, goals={"time": 60.0})
    assert request.suite == str(path.resolve())
    planned = plan_run(request)
    assert [spec.epochs for spec in planned.all_specs] == [1, 1, 1, 1] and planned.goals.time == 60.0


def test_list_shows_a_suite_file_and_the_preset_it_runs_under(tmp_path, capsys):
    path = str(write(tmp_path, GOOD))
    assert main(["--list", "--suite", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mine (") and "small: keras:MobileNetV3Small, 3 epochs, policy auto" in out
    assert out.strip().endswith("preset as-written: each trial's own epochs and limits, as its suite file states them")
    assert main(["--list", "--suite", path, "--preset", "smoke"]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("preset smoke (the suite file's [preset.smoke] table): epochs = 1, train_limit = 16, eager = true")
    )
    assert main(["--list", "--suite", "baseline"]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("preset smoke: few epochs and images: checks the whole path in minutes on a CPU")
    )
    assert main(["--list", "--suite", "all"]) == 0
    assert capsys.readouterr().out.strip().endswith("in minutes on a CPU; transfer: a smoke preset of its own")


POLICIES = """
name = "arrows"
policy = "light"
image_size = 32
[policies.light]
crop = 0.875
horizontal_flip = false
rotation = 10
[policies.heavy]
description = "everything at once"
crop = 28
vertical_flip = true
contrast = [0.5, 1.5]
mixup = 0.2
[[trials]]
name = "plain"
model = "tiny_cnn"
policy = "none"
epochs = 7
[[trials]]
name = "light"
model = "tiny_cnn"
[[trials]]
name = "heavy"
model = "tiny_cnn"
policy = "heavy"
"""


def test_declared_policies_travel_with_their_trials(tmp_path):
    suite = load_suite_file(write(tmp_path, POLICIES))
    plain, light, heavy = suite.specs
    assert suite.image_size == 32 and suite.as_written
    assert (plain.policy, plain.policy_keys) == ("none", {})
    assert light.policy == "light" and light.augmentation.crop == 0.875 and light.augmentation.rotation == (-10, 10)
    assert (
        light.augmentation.description
        == "random crop of 0.875 of the side (validation: the centre crop), rotation -10 to 10 deg"
    )
    assert heavy.augmentation.description == "everything at once" and heavy.augmentation.mixes
    assert heavy.augmentation.contrast == (0.5, 1.5) and heavy.augmentation.crop_size(32) == 28
    # through Ray Tune's flat config and back
    assert TrialSpec.from_dict(heavy.to_dict()) == heavy and "policy.mixup" in heavy.to_dict()


def test_a_suite_file_runs_as_written_unless_a_preset_is_asked(tmp_path):
    path = str(write(tmp_path, POLICIES))
    written = plan_run(RunRequest(path, default_preset(load_suite_file(path)), "", True, None, {}, False))
    assert written.preset == "as-written" and [spec.epochs for spec in written.specs] == [7, 10, 10]
    assert [spec.train_limit for spec in written.specs] == [None] * 3 and written.image_size == 32
    smoke = plan_run(RunRequest(path, "smoke", "", True, None, {}, False, image_size=48))
    assert [spec.epochs for spec in smoke.specs] == [
        6
    ] * 3 and smoke.image_size == 48  # no [preset.smoke]: the general one


def test_a_trial_without_a_policy_gets_the_datasets(tmp_path):
    text = HEAD + TRIAL
    path = str(write(tmp_path, text))
    folder = write_image_folder(tmp_path / "photos", subjects=10, images_per_subject=1)
    on_faces = plan_run(RunRequest(path, "as-written", "", True, None, {}, False))
    on_folder = plan_run(RunRequest(path, "as-written", str(folder), False, None, {}, False))
    assert on_faces.specs[0].policy == "report" and on_folder.specs[0].policy == "none"


def test_the_shipped_example_is_valid():
    suite = load_suite_file(REPO_ROOT / "examples" / "keras_backbones.toml")
    assert [spec.model for spec in suite.specs] == [
        "keras:MobileNetV3Small",
        "keras:EfficientNetB0",
        "keras:MobileNetV2",
    ]
    assert suite.search.samples == 3 and suite.budgets["time"] == 1800


HEAD = 'name = "bad"\n'
TRIAL = '[[trials]]\nname = "t"\nmodel = "tiny_cnn"\n'
MALFORMED = {
    "not TOML": ("name = \n", "not valid TOML"),
    "unknown top-level key": (HEAD + "nmae = 3\n" + TRIAL, "the top level, key nmae: unknown key"),
    "no trials": ('description = "x"\n', "key name: missing"),
    "unknown trial key": (
        HEAD + TRIAL + "learning_rat = 0.1\n",
        "[[trials]] #1, key learning_rat: unknown key (did you",
    ),
    "wrong type": (HEAD + TRIAL + 'epochs = "ten"\n', "[[trials]] #1, key epochs: must be an integer"),
    "unknown model": (HEAD + '[[trials]]\nname = "t"\nmodel = "keras:ResNet5"\n', "key model: unknown model"),
    "bound broken": (HEAD + TRIAL + "learning_rate = -1.0\n", "key learning_rate: learning_rate must be > 0"),
    "unknown budget": (HEAD + "[goals]\nspeed = 3\n" + TRIAL, "[goals], key speed: unknown key"),
    "bad search bounds": (
        HEAD + TRIAL + '[search]\nname = "s"\nmodel = "tiny_cnn"\nlearning_rate = 0.1\n',
        "[search], key learning_rate: must be a list",
    ),
    "bad smoke preset": (HEAD + TRIAL + "[preset.smoke]\nepochs = 0\n", "[preset.smoke], key epochs: must be >= 1"),
    "repeated names": (HEAD + TRIAL + TRIAL, "repeats trial names: t"),
    "unknown policy key": (
        HEAD + TRIAL + "[policies.mine]\nhorizontal_flop = true\n",
        "[policies.mine], key horizontal_flop: unknown key",
    ),
    "bad policy value": (HEAD + TRIAL + "[policies.mine]\ncrop = 1.5\n", "[policies.mine], key crop: must be > 0"),
    "bad policy range": (
        HEAD + TRIAL + "[policies.mine]\ncontrast = [1.5, 0.5]\n",
        "[policies.mine], key contrast: [low, high] must have low <= high",
    ),
    "policy flag not a bool": (
        HEAD + TRIAL + '[policies.mine]\nvertical_flip = "yes"\n',
        "[policies.mine], key vertical_flip: must be true or false",
    ),
    "built-in name declared": (HEAD + TRIAL + "[policies.report]\ncrop = 0.5\n", "[policies.report]: 'report' is a"),
    "undeclared policy named": (HEAD + TRIAL + 'policy = "light"\n', "[[trials]] #1, key policy: no policy 'light'"),
    "bad image size": ("image_size = 4\n" + HEAD + TRIAL, "the top level, key image_size: must be 8..1024"),
    "unknown metric": (
        'metric = "f1"\n' + HEAD + TRIAL,
        "the top level, key metric: one of accuracy, balanced_accuracy",
    ),
    "metric per trial": (HEAD + TRIAL + 'metric = "macro_f1"\n', "[[trials]] #1, key metric: unknown key"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_suite_file_is_one_line_naming_file_table_and_key(case, tmp_path, capsys):
    text, expected = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(SuiteFileError) as caught:
        load_suite_file(path)
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value), str(caught.value)
    assert main(["--suite", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "runs").exists()


def test_a_missing_suite_file_is_one_line(tmp_path, capsys):
    assert main(["--suite", str(tmp_path / "nope.toml")]) == 2
    assert "no such suite file" in capsys.readouterr().err


KERAS_TRIAL = """
[[trials]]
name = "{name}"
model = "keras:{model}"
model_options = {{ input_size = 32{latent} }}
optimizer = "adam"
learning_rate = 1e-3
momentum = 0.0
batch_size = 8
epochs = 2
"""
KERAS_SUITE = (
    """
name = "three_backbones"
description = "three keras.applications backbones on an image folder"
target_accuracy = 0.6
[goals]
params = 2e6
train_time = 600
"""
    + KERAS_TRIAL.format(name="mobilenet_v3_small", model="MobileNetV3Small", latent=", latent_size = 16")
    + KERAS_TRIAL.format(name="efficientnet_b0", model="EfficientNetB0", latent="")
    + KERAS_TRIAL.format(name="mobilenet_v2", model="MobileNetV2", latent="")
    + """
[preset.smoke]
train_limit = 24
val_limit = 8
eager = true
"""
)


@pytest.mark.slow
def test_a_toml_suite_of_three_keras_models_runs_on_an_image_folder(tmp_path):
    photos = write_image_folder(tmp_path / "photos", subjects=20, images_per_subject=3)
    suite = write(tmp_path, KERAS_SUITE, "three.toml")
    result = run_cli("--suite", str(suite), "--data", str(photos), "--out", str(tmp_path / "r"), "--preset", "smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-2].startswith("Done: 3 trial(s): 3 completed")
    board = next((tmp_path / "r").glob("*-three_backbones/LEADERBOARD.md")).read_text()
    budgets = "best val accuracy >= the published figure for its row (else 0.60) (n/a in a smoke run)"
    assert f"**Budgets** (target accuracy 0.60): {budgets}; training seconds <= 600 s; parameters <= 2,000,000" in board
    answer = board.split("## The answer", 1)[1].split("## Accuracy", 1)[0]
    assert "| 1   | mobilenet_v3_small | keras:MobileNetV3Small |" in answer  # the one row within 2M parameters
    misses = sorted(line.split(" ", 2)[2] for line in answer.splitlines() if line.startswith("- #"))
    assert misses == [
        "`efficientnet_b0`: parameters 4,052,133 > 2,000,000",
        "`mobilenet_v2`: parameters 2,260,546 > 2,000,000",
    ]
    assert "cats, dogs" in board  # the classes of the image folder, in the header's counting


def test_the_docs_example_is_a_valid_suite_file(tmp_path):
    page = (REPO_ROOT / "docs" / "suites-models-data.md").read_text()
    block = page.split("```toml\n", 1)[1].split("```", 1)[0]
    suite = load_suite_file(write(tmp_path, block, "docs_example.toml"))
    assert suite.name == "keras_backbones" and len(suite.specs) == 2 and suite.search.samples == 3


def test_a_suite_file_naming_a_model_of_a_model_module_lists_and_plans(tmp_path, monkeypatch, capsys):
    module = tmp_path / "arrow_models.py"
    module.write_text(
        "import models\nfrom models.tiny import tiny_cnn\n\n"
        'models.register_model("arrow_net", default_input_size=32)(tiny_cnn)\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(models.registry, "_REGISTRY", dict(models.registry._REGISTRY))  # arrow_net leaves with the test
    monkeypatch.delitem(sys.modules, "arrow_models", raising=False)
    suite = write(tmp_path, HEAD + '[[trials]]\nname = "t"\nmodel = "arrow_net"\n')
    assert main(["--list", "--suite", str(suite), "--model-module", "arrow_models"]) == 0
    assert "t: arrow_net, 10 epochs, policy auto" in capsys.readouterr().out


def test_a_smoke_preset_measures_as_a_smoke_run_unless_its_table_says_otherwise(tmp_path):
    path = str(write(tmp_path, GOOD))
    smoke = plan_run(RunRequest(path, "smoke", "", True, None, {}, False)).all_specs
    written = plan_run(RunRequest(path, "as-written", "", True, None, {}, False)).all_specs
    assert all(spec.smoke_measures for spec in smoke) and not any(spec.smoke_measures for spec in written)
    full = str(write(tmp_path, GOOD.replace("eager = true", "eager = true\nsmoke_measures = false"), "full.toml"))
    assert not any(
        spec.smoke_measures for spec in plan_run(RunRequest(full, "smoke", "", True, None, {}, False)).all_specs
    )
    assert all(
        spec.smoke_measures for spec in plan_run(RunRequest("baseline", "smoke", "", True, None, {}, False)).all_specs
    )
    paper = plan_run(RunRequest("baseline", "paper", "", True, None, {}, False)).all_specs
    assert not any(spec.smoke_measures for spec in paper)
