"""Augmentation policies: declared keys checked one by one, and what a flip does to classes it destroys."""

import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.errors import UsageError
from bench.plan.dataset import prepare_dataset
from bench.specs import SpecError, TrialSpec
from bench.trial.fit import run_trial
from data.loader import ArrayBatches
from data.mixing import BatchMixing
from data.policies import BUILT_IN, KEYS, Policy, PolicyError, declare_policy, get_policy
from tests.conftest import run_cli
from tests.image_folders import arrow_image, write_arrow_folder


def test_every_key_declares_what_it_says():
    table = {"crop": 24, "horizontal_flip": True, "vertical_flip": True, "rotation": 15, "zoom": [-0.2, 0.1]}
    table |= {"translation": 0.1, "shear": 0.2, "brightness": [-0.1, 0.3], "contrast": 0.5, "noise": 4}
    table |= {"randaugment": 0.3, "mixup": 0.2, "cutmix": 1.0}
    assert set(table) == set(KEYS) - {"description"}
    policy = declare_policy("all", table)
    assert (policy.crop, policy.rotation, policy.zoom, policy.translation) == (24, (-15, 15), (-0.2, 0.1), (-0.1, 0.1))
    assert (policy.brightness, policy.contrast, policy.noise, policy.shear) == ((-0.1, 0.3), (0.5, 1.5), 4.0, 0.2)
    assert (policy.randaugment, policy.mixup, policy.cutmix) == (0.3, 0.2, 1.0) and policy.mixes
    assert "MixUp alpha 0.2, CutMix alpha 1" in policy.description and "rotation -15 to 15 deg" in policy.description
    assert declare_policy("r", {"randaugment": True}).randaugment == 0.5  # Keras's default magnitude
    assert (
        declare_policy("quiet", {"rotation": 0, "horizontal_flip": False}).description == BUILT_IN["none"].description
    )


def test_a_crop_is_pixels_or_a_share_of_the_side():
    assert declare_policy("p", {"crop": 28}).crop_size(32) == 28
    assert declare_policy("f", {"crop": 0.5}).crop_size(32) == 16
    assert BUILT_IN["report"].crop_size(256) == 227 and BUILT_IN["report"].crop_size(32) == 28
    with pytest.raises(PolicyError, match="policy p crops 28 px from 16 px images"):
        declare_policy("p", {"crop": 28}).crop_size(16)


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"crop": 0}, "crop", "pixels must be >= 1"),
        ({"crop": 1.0}, "crop", "leave crop out"),
        ({"crop": True}, "crop", "must be a number"),
        ({"rotation": 200}, "rotation", "must be >= 0 and <= 180"),
        ({"rotation": [10]}, "rotation", "a number or [low, high]"),
        ({"contrast": [0.5, 2.5]}, "contrast", "must be >= 0 and <= 2"),
        ({"brightness": "lots"}, "brightness", "must be a number"),
        ({"noise": -1}, "noise", "must be >= 0"),
        ({"mixup": 0}, "mixup", "must be > 0"),
        ({"randaugment": 2}, "randaugment", "<= 1"),
        ({"horizontal_flip": 1}, "horizontal_flip", "true or false"),
        ({"description": ""}, "description", "one line of text"),
        ({"flip": True}, "flip", "unknown key"),
    ],
)
def test_a_bad_key_is_named_with_its_problem(table, key, problem):
    with pytest.raises(PolicyError) as caught:
        declare_policy("mine", table)
    assert caught.value.key == key and problem in caught.value.problem, str(caught.value)


def test_names_resolve_to_built_in_policies_and_a_spec_refuses_unknown_ones():
    assert get_policy("report") is BUILT_IN["report"]
    with pytest.raises(PolicyError, match="unknown policy 'light'"):
        get_policy("light")
    with pytest.raises(SpecError, match="policy light: unknown policy 'light'"):
        TrialSpec(name="t", model="tiny_cnn", policy="light")
    with pytest.raises(SpecError, match="mixes them on the host"):
        TrialSpec(name="t", model="tiny_cnn", policy="m", policy_keys={"mixup": 0.2}, data_on_device="on")
    assert Policy.from_config(BUILT_IN["report"].to_config()) == BUILT_IN["report"]


def test_arrows_are_the_class_and_a_horizontal_flip_swaps_them():
    rng = np.random.default_rng(0)
    left = arrow_image(rng, pointing_right=False)
    assert left[:, :16].sum() > left[:, 16:].sum()  # the head's pixels sit on the side it points to
    right = arrow_image(np.random.default_rng(0), pointing_right=True)
    np.testing.assert_array_equal(right, left[:, ::-1])


def test_an_image_folder_is_cached_at_its_images_own_size(tmp_path):
    arrows = write_arrow_folder(tmp_path / "arrows", per_class=10)
    cache = prepare_dataset(str(arrows), False, [], write=lambda line: None).cache
    assert cache.image_size == 32 and (cache.folder / "images.u8").stat().st_size == 20 * 32 * 32 * 3
    asked = prepare_dataset(str(arrows), False, [], write=lambda line: None, image_size=48).cache
    assert asked.image_size == 48 and asked.fingerprint != cache.fingerprint and asked.folder != cache.folder
    Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(arrows / "left" / "tall.png")
    lines = []
    assert prepare_dataset(str(arrows), False, [], write=lines.append).cache.image_size == 256
    assert any("at 256x256 (its images differ in size)" in line for line in lines)


def test_a_pixel_crop_larger_than_the_cache_is_refused_before_any_trial(tmp_path):
    arrows = write_arrow_folder(tmp_path / "arrows", per_class=10)
    spec = TrialSpec(name="big", model="tiny_cnn", policy="big", policy_keys={"crop": 40})
    with pytest.raises(UsageError, match="trial big: policy big crops 40 px from 32 px images; give a larger"):
        prepare_dataset(str(arrows), False, [spec], write=lambda line: None)


ARROWS = """
name = "arrows"
description = "left and right arrows: a horizontal flip swaps the classes"
target_accuracy = 0.9

[policies.upright]
vertical_flip = true
horizontal_flip = false
brightness = 0.1

[[trials]]
name = "as_is"
model = "tiny_cnn"
policy = "none"
{common}
[[trials]]
name = "report"
model = "tiny_cnn"
policy = "report"
{common}
[[trials]]
name = "upright"
model = "tiny_cnn"
policy = "upright"
{common}
"""
COMMON = """model_options = { input_size = 32 }
optimizer = "adam"
learning_rate = 3e-3
momentum = 0.0
batch_size = 32
epochs = 8
patience = 8
"""


@pytest.mark.slow
def test_a_flip_the_data_did_not_ask_for_destroys_its_classes(tmp_path):
    """Trained through bench.run as a suite file declares: no augmentation and a declared policy
    without horizontal flips learn the arrows, the report's policy (which flips) cannot."""
    arrows = write_arrow_folder(tmp_path / "arrows")
    suite = tmp_path / "arrows.toml"
    suite.write_text(textwrap.dedent(ARROWS.format(common=COMMON)))
    result = run_cli("--suite", str(suite), "--data", str(arrows), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Cache: 240 images at 32x32 (its images' own size)" in result.stdout
    run_dir = next((tmp_path / "runs").glob("*-arrows"))
    best = pd.read_csv(run_dir / "results.csv").set_index("trial")["best_val_accuracy"]
    assert best["as_is"] >= 0.9 and best["upright"] >= 0.9, best.to_dict()
    assert best["report"] <= 0.7, best.to_dict()  # half the images flipped: left and right look alike
    board = (run_dir / "LEADERBOARD.md").read_text()
    assert "- preset: as-written;" in board
    assert "`upright`: random vertical flips, brightness -0.1 to 0.1" in board
    assert "`none`: none: resized to the model's input only" in board
    # words that fit the data: images and their classes, folds said as they were made, no faces
    header = board.split("## The answer", 1)[0]
    assert "face" not in header.lower(), header
    assert "images: 240 unique labelled images, each once (left, right)" in header
    assert "subjects (subjects.csv, else each image its own) dealt to folds 0-4" in header
    assert "recall per class" in board and "| left " in board.split("## Per class", 1)[1]


def test_mixed_batches_carry_soft_labels_and_validation_batches_one_hot():
    images = np.random.default_rng(1).integers(0, 256, size=(12, 8, 8, 3)).astype(np.uint8)
    labels = np.arange(12) % 3
    mixing = BatchMixing(3, mixup_alpha=0.4, seed=2)
    train = ArrayBatches(images, labels, 4, shuffle=True, mixing=mixing, mix=True, prefetch=0)
    val = ArrayBatches(images, labels, 4, shuffle=False, mixing=mixing, prefetch=0)
    mixed_images, soft = train.batch(0, 0)
    assert soft.shape == (4, 3) and soft.dtype == np.float32 and train.label_classes == 3
    np.testing.assert_allclose(soft.sum(axis=1), 1, rtol=1e-6)
    _, one_hot = val.batch(0, 0)
    np.testing.assert_array_equal(one_hot, np.eye(3, dtype=np.float32)[labels[:4]])


@pytest.mark.backends
def test_a_trial_trains_with_mixup_and_cutmix(small_cache):
    # RandAugment's layers are checked in tests/test_transforms.py: on JAX it compiles for a minute
    keys = {"crop": 0.9, "horizontal_flip": True, "mixup": 0.4, "cutmix": 1.0}
    spec = TrialSpec(name="mix", model="tiny_cnn", model_options={"input_size": 32}, policy="mix", policy_keys=keys)
    spec = spec.replace(epochs=2, batch_size=16, train_limit=48, val_limit=16, optimizer="adam", momentum=0.0)
    reports = []
    run_trial(spec, small_cache, reports.append)
    assert len(reports) == 2 and reports[-1]["data_on_device"] == "off"  # mixed on the host
    for report in reports:
        assert np.isfinite(report["train_loss"]) and 0 <= report["val_accuracy"] <= 1, report
    assert 0 <= reports[-1]["val_accuracy_oversampled"] <= 1  # the policy crops: ten views
