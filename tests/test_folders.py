"""Image-folder datasets: classes from folders, subject-exclusive folds, the same cache and summary."""

import json

import pytest

from bench.specs import TrialSpec
from bench.trial.fit import build_trial_model, load_trial_data, run_trial
from data.__main__ import main as data_main
from data.adience import DatasetError, split_folds
from data.cache import ensure_cache
from data.datasets import load_dataset
from data.folders import load_image_folder, subject_folds
from tests.image_folders import write_image_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("photos") / "photos")


def test_classes_come_from_the_folders_and_subjects_stay_in_one_fold(photos):
    table = load_dataset(photos)
    assert table.layout == "image-folder" and table.class_names == ("cats", "dogs")
    assert len(table.faces) == 40 and set(table.faces["label"]) == {0, 1}
    assert table.faces.groupby("user_id")["fold"].nunique().max() == 1  # subjects never cross folds
    assert sorted(table.faces["fold"].unique()) == [0, 1, 2, 3, 4]
    assert table.faces.groupby("user_id").size().eq(4).all()
    assert table.faces["path"].map(lambda p: p.startswith(str(photos))).all()
    assert "40 labelled images (20 cats, 20 dogs; per fold" in table.summary()


def test_folds_are_deterministic_and_balanced():
    subjects = [f"s{i}" for i in range(23)]
    folds = subject_folds(subjects)
    assert folds == subject_folds(list(reversed(subjects)))  # the order given does not matter
    sizes = [list(folds.values()).count(fold) for fold in range(5)]
    assert max(sizes) - min(sizes) <= 1


def test_without_a_subject_file_each_image_is_its_own_subject(tmp_path):
    root = write_image_folder(tmp_path / "plain", classes=("a", "b", "c"), subjects=6, csv=False)
    table = load_image_folder(root)
    assert table.class_names == ("a", "b", "c") and table.faces["user_id"].nunique() == 24
    assert table.fold_files == {}


def test_bad_subject_rows_are_counted_by_reason(tmp_path):
    root = write_image_folder(tmp_path / "bad")
    lines = (root / "subjects.csv").read_text().splitlines()
    lines += ["../../etc/passwd,evil", "cats/nope.jpg,ghost", "cats/subject00_0.jpg,again", "one,two,three"]
    (root / "subjects.csv").write_text("\n".join(lines) + "\n")
    table = load_image_folder(root)
    assert table.skipped == {"unsafe_path": 1, "not_in_a_class": 1, "duplicate": 1, "bad_columns": 1}
    assert len(table.faces) == 40


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: (root / "only").mkdir(), "holds no Adience fold files"),
        (lambda root: write_image_folder(root, subjects=3), "3 subject(s) cannot fill 5 subject-exclusive folds"),
        (lambda root: (write_image_folder(root), (root / "subjects.csv").write_text("file,who\n")), "path,subject"),
    ],
)
def test_a_folder_that_is_no_dataset_is_one_line(tmp_path, setup, message):
    root = tmp_path / "d"
    root.mkdir()
    setup(root)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(root)


def test_the_cache_summary_and_a_trial_take_it_as_they_take_adience(photos, tmp_path, capsys):
    cache = ensure_cache(photos, cache_root=tmp_path / "cache")
    assert cache.class_names == ("cats", "dogs") and len(cache.faces) == 40
    train, val = split_folds(cache.faces, 4)
    assert not set(train["user_id"]) & set(val["user_id"])
    spec = TrialSpec(name="t", model="tiny_cnn", model_options={"input_size": 32}, epochs=1, batch_size=8)
    data = load_trial_data(spec.replace(optimizer="adam", momentum=0.0), cache)
    assert set(data.train_labels) == {0, 1}
    assert data_main(["summarize", str(photos), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["folds"]["0"]) == {
        "rows",
        "labelled",
        "unique_labelled",
        "cats",
        "dogs",
        "users",
        "images_found",
    }
    assert sum(fold["images_found"] for fold in summary["folds"].values()) == 40


def test_a_leaderboard_speaks_of_images_and_says_how_the_folds_were_made(photos, small_synthetic, tmp_path):
    from bench.plan.dataset import RunData
    from bench.plan.protocols import get_protocol

    cache = ensure_cache(photos, cache_root=tmp_path / "cache")
    folder = RunData(photos, synthetic=False, cache=cache, split_sizes=[])
    line = folder.protocol_line(get_protocol("report"))
    assert folder.items == "images" and "face" not in line + folder.counting(False)
    assert line.startswith("report: validate on fold 4, train on folds 0-3, each image once; folds: 2 classes (cats")
    faces = RunData(small_synthetic, synthetic=True, cache=cache, split_sizes=[])
    assert faces.items == "faces" and "the synthetic faces' five folds" in faces.protocol_line(get_protocol("levi"))


def test_a_trial_learns_three_classes(tmp_path):
    root = write_image_folder(tmp_path / "three", classes=("a", "b", "c"), subjects=10)
    cache = ensure_cache(root, cache_root=tmp_path / "cache")
    spec = TrialSpec(name="t3", model="tiny_cnn", model_options={"input_size": 32}, epochs=1, batch_size=8)
    reports = []
    run_trial(spec.replace(optimizer="adam", momentum=0.0, run_eagerly=True), cache, reports.append)
    assert 0 <= reports[0]["val_accuracy"] <= 1
    _, network = build_trial_model(spec, None, num_classes=len(cache.class_names))
    assert network.output.shape[-1] == 3 and reports[0]["params"] == network.count_params()
