"""The fold-file loader, on the official Adience files and on malformed folders."""

import pandas as pd
import pytest

from data.adience import (
    DatasetError,
    cross_validation_splits,
    find_fold_files,
    load_faces,
    read_fold_file,
    split_folds,
)


def test_official_fold_files_parse_with_the_published_counts(official_folds):
    table = load_faces(official_folds)
    assert table.rows_read == 19_487
    assert [table.folds[k].rows for k in range(5)] == [4496, 3745, 3953, 3459, 3834]
    # m+f lines as they stand: Levi & Hassner's per-fold gender lists
    assert [table.folds[k].labelled for k in range(5)] == [4007, 3624, 3191, 3318, 3463]
    # each face once: the cleaned-Adience counts
    assert len(table.faces) == 17_492
    assert table.fold_counts() == {0: 3995, 1: 3609, 2: 3137, 3: 3306, 4: 3445}
    assert table.skipped == {"duplicate": 117, "no_gender": 1878}
    assert set(table.faces["gender"]) == {0, 1}
    # The published cleaned figures say 8,120 male / 9,372 female; the fold files
    # themselves give 8,124 / 9,368 (checked with awk, sort -u on user, face, image).
    assert (table.faces["gender"] == 0).sum() == 8124 and (table.faces["gender"] == 1).sum() == 9368


def test_keep_duplicates_reproduces_the_original_per_fold_lists(official_folds):
    table = load_faces(official_folds, keep_duplicates=True)
    assert len(table.faces) == 17_603
    assert table.fold_counts() == {0: 4007, 1: 3624, 2: 3191, 3: 3318, 4: 3463}
    assert "duplicate" not in table.skipped
    assert table.skipped == {"no_gender": 19_487 - 17_603}


def test_each_face_is_used_once_by_default(official_folds):
    faces = load_faces(official_folds).faces
    assert not faces.duplicated(["user_id", "face_id", "original_image"]).any()
    assert (faces["copies"] > 1).sum() == 108  # faces listed 2, 3 or 4 times (111 extra m/f lines)


def test_official_folds_are_subject_exclusive(official_folds):
    table = load_faces(official_folds)
    raw = pd.concat([read_fold_file(official_folds / f"fold_{k}_data.txt", k) for k in range(5)])
    assert raw["user_id"].nunique() == 168
    assert raw.groupby("user_id")["fold"].nunique().max() == 1
    assert table.faces.groupby("user_id")["fold"].nunique().max() == 1


def test_official_rows_per_fold(official_folds):
    counts = [len(read_fold_file(official_folds / f"fold_{k}_data.txt", k)) for k in range(5)]
    assert counts == [4496, 3745, 3953, 3459, 3834]


def test_face_paths_follow_the_aligned_layout(official_folds):
    table = load_faces(official_folds)
    first = table.faces.iloc[0]
    assert first["path"] == str(
        official_folds / "faces" / "30601258@N03" / "landmark_aligned_face.1.10399646885_67c7d20df9_o.jpg"
    )


def test_default_split_trains_on_folds_0_to_3(official_folds):
    faces = load_faces(official_folds).faces
    train, val = split_folds(faces)
    assert set(train["fold"]) == {0, 1, 2, 3}
    assert set(val["fold"]) == {4}
    assert len(train) == 3995 + 3609 + 3137 + 3306 and len(val) == 3445
    assert not set(train["user_id"]) & set(val["user_id"])


def test_five_fold_cross_validation_is_subject_exclusive_and_covers_every_face_once(official_folds):
    faces = load_faces(official_folds).faces
    splits = cross_validation_splits()
    assert splits == [
        ((1, 2, 3, 4), 0),
        ((0, 2, 3, 4), 1),
        ((0, 1, 3, 4), 2),
        ((0, 1, 2, 4), 3),
        ((0, 1, 2, 3), 4),
    ]
    held_out = []
    for train_folds, val_fold in splits:
        train, val = split_folds(faces, val_fold, train_folds)
        assert not set(train["user_id"]) & set(val["user_id"])
        assert len(train) + len(val) == len(faces)
        held_out.append(val)
    every = pd.concat(held_out)
    assert len(every) == len(faces) == 17_492
    assert not every.duplicated(["user_id", "face_id", "original_image"]).any()


def test_split_stays_subject_exclusive_when_a_user_is_in_two_folds(small_synthetic, tmp_path):
    faces = load_faces(small_synthetic).faces.copy()
    moved = faces[faces["fold"] == 4]["user_id"].iloc[0]
    # one face of a fold-4 user also listed in fold 0: training must not see that user
    stray = faces[faces["user_id"] == moved].iloc[[0]].assign(fold=0, face_id="999")
    faces = pd.concat([faces, stray], ignore_index=True)
    train, val = split_folds(faces, 4)
    assert moved in set(val["user_id"]) and moved not in set(train["user_id"])


def test_other_validation_fold(official_folds):
    train, val = split_folds(load_faces(official_folds).faces, val_fold=0)
    assert set(val["fold"]) == {0} and set(train["fold"]) == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("val_fold", "train_folds", "message"), [(5, None, "0..4"), (2, (1, 2), "both a training and the validation")]
)
def test_bad_splits_are_refused(official_folds, val_fold, train_folds, message):
    with pytest.raises(DatasetError, match=message):
        split_folds(load_faces(official_folds).faces, val_fold, train_folds)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        find_fold_files(tmp_path / "nope")


def test_folder_without_fold_files(tmp_path):
    with pytest.raises(DatasetError, match="holds no Adience fold files"):
        load_faces(tmp_path)


def test_folder_with_some_fold_files_missing(tmp_path, official_folds):
    (tmp_path / "fold_0_data.txt").write_text((official_folds / "fold_0_data.txt").read_text())
    with pytest.raises(DatasetError, match="lacks fold files fold_1_data.txt"):
        load_faces(tmp_path)


def test_file_with_the_wrong_header(tmp_path):
    for fold in range(5):
        (tmp_path / f"fold_{fold}_data.txt").write_text("name\tlabel\nx\tm\n")
    with pytest.raises(DatasetError, match="does not start with the Adience header"):
        load_faces(tmp_path)


def test_a_file_path_instead_of_a_folder(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_faces(path)


def test_coarse_tilt_layout_is_detected(tmp_path, official_folds):
    for fold in range(5):
        (tmp_path / f"fold_{fold}_data.txt").write_text((official_folds / f"fold_{fold}_data.txt").read_text())
    user = tmp_path / "faces" / "30601258@N03"
    user.mkdir(parents=True)
    (user / "coarse_tilt_aligned_face.1.10399646885_67c7d20df9_o.jpg").write_bytes(b"")
    table = load_faces(tmp_path)
    assert table.image_prefix == "coarse_tilt_aligned_face"
    assert table.faces.iloc[0]["path"].endswith("coarse_tilt_aligned_face.1.10399646885_67c7d20df9_o.jpg")
