"""The built-in synthetic dataset: Adience layout, subject-exclusive folds, a real signal."""

import numpy as np
import pytest

from data.adience import FOLD_COLUMNS, load_faces, read_fold_file
from data.decode import decode_faces
from data.synthetic import SyntheticConfig, ensure_synthetic_dataset, write_synthetic_dataset


def test_fold_files_have_the_official_header_and_parse(small_synthetic):
    for fold in range(5):
        header = (small_synthetic / f"fold_{fold}_data.txt").read_text().splitlines()[0]
        assert tuple(header.split("\t")) == FOLD_COLUMNS
        rows = read_fold_file(small_synthetic / f"fold_{fold}_data.txt", fold)
        assert len(rows) == 8 * 6
    table = load_faces(small_synthetic)
    assert table.rows_read == 5 * 8 * 6
    assert len(table.faces) + sum(table.skipped.values()) == table.rows_read
    assert set(table.skipped) <= {"no_gender"}


def test_every_labelled_face_has_its_jpeg(small_synthetic):
    table = load_faces(small_synthetic)
    for path in table.faces["path"]:
        assert path.endswith(".jpg") and "/faces/" in path and "landmark_aligned_face." in path
    images = decode_faces(table.faces["path"].tolist())
    assert images.shape == (len(table.faces), 256, 256, 3) and images.dtype == np.uint8


def test_folds_are_subject_exclusive_with_both_genders(small_synthetic):
    faces = load_faces(small_synthetic).faces
    assert faces.groupby("user_id")["fold"].nunique().max() == 1
    assert faces.groupby("user_id")["gender"].nunique().max() == 1
    for fold in range(5):
        assert set(faces[faces["fold"] == fold]["gender"]) == {0, 1}


def test_generation_is_deterministic(tmp_path):
    config = SyntheticConfig(users_per_fold=2, faces_per_user=2, seed=3)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_synthetic_dataset(tmp_path / name, config)
    for fold in range(5):
        assert (tmp_path / "a" / f"fold_{fold}_data.txt").read_bytes() == (
            tmp_path / "b" / f"fold_{fold}_data.txt"
        ).read_bytes()
    jpegs_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    jpegs_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.jpg"))
    assert jpegs_a == jpegs_b
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in jpegs_a)


def test_dataset_is_generated_once_into_the_cache(tmp_path):
    config = SyntheticConfig(users_per_fold=2, faces_per_user=1, seed=1)
    first = ensure_synthetic_dataset(config, cache_root=tmp_path)
    marker = first / "fold_0_data.txt"
    stamp = marker.stat().st_mtime_ns
    assert ensure_synthetic_dataset(config, cache_root=tmp_path) == first
    assert marker.stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "synthetic"
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".partial-")]


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ADIENCE_BENCH_CACHE", str(tmp_path))
    path = ensure_synthetic_dataset(SyntheticConfig(users_per_fold=2, faces_per_user=1, seed=2))
    assert path.parent.parent == tmp_path


@pytest.mark.parametrize("bad", [{"users_per_fold": 1}, {"faces_per_user": 0}, {"image_size": 8}, {"faint_share": 1.5}])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        SyntheticConfig(**bad)


def _standardise(images):
    images = images.astype(np.float64)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    std = images.std(axis=(1, 2, 3), keepdims=True)
    return (images - mean) / np.maximum(std, 1e-6)


def _orientation_feature(images):
    """log of vertical over horizontal gradient energy: strands' orientation."""
    grey = images.mean(axis=3)
    vertical = np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))
    horizontal = np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))
    return np.log(vertical / horizontal)


@pytest.fixture(scope="module")
def labelled_images(small_synthetic):
    faces = load_faces(small_synthetic).faces
    return decode_faces(faces["path"].tolist()), faces["gender"].to_numpy()


def test_mean_pixel_does_not_separate_the_classes(labelled_images):
    images, labels = labelled_images
    features = np.c_[images.mean(axis=(1, 2)), np.ones(len(images))]
    # best linear separator on mean colour, fitted and scored on the same data (optimistic)
    weights, *_ = np.linalg.lstsq(features, labels * 2.0 - 1, rcond=None)
    accuracy = ((features @ weights > 0) == labels).mean()
    assert accuracy < 0.70


def test_class_signal_survives_standardisation_flips_and_crops(labelled_images):
    images, labels = labelled_images
    rng = np.random.default_rng(0)
    augmented = []
    for image in images:
        top, left = rng.integers(0, 256 - 227, size=2)
        crop = image[top : top + 227, left : left + 227]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1, :]
        augmented.append(crop)
    feature = _orientation_feature(_standardise(np.stack(augmented)))
    # male strands run near horizontal: more vertical gradient energy
    accuracy = ((feature > np.median(feature)) == (labels == 0)).mean()
    assert accuracy > 0.80
