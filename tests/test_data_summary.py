"""``python -m data summarize``: the official counts on the real fold files, JSON shape, synthetic data."""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data.__main__ import main
from data.adience import read_fold_lines
from tests.conftest import REPO_ROOT

FOLD_FIELDS = {"rows", "labelled", "unique_labelled", "male", "female", "users", "images_found"}


def run_summarize(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "data", "summarize", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


@pytest.fixture(scope="module")
def official_with_stand_ins(official_folds, tmp_path_factory):
    """A copy of the official fold files with a small stand-in JPEG for every listed face."""
    root = tmp_path_factory.mktemp("official") / "adience"
    root.mkdir()
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="JPEG")
    for fold in range(5):
        name = f"fold_{fold}_data.txt"
        shutil.copyfile(official_folds / name, root / name)
        for _, fields in read_fold_lines(root / name):
            user = root / "faces" / fields[0]
            user.mkdir(parents=True, exist_ok=True)
            (user / f"landmark_aligned_face.{fields[2]}.{fields[1]}").write_bytes(buffer.getvalue())
    return root


def test_summarize_prints_the_official_counts(official_with_stand_ins):
    result = run_summarize(str(official_with_stand_ins), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {"folds", "skipped", "users_in_several_folds", "converted", "counting"}
    assert summary["counting"] == {"keep_duplicates": False, "listed_rows": 17_603, "unique_faces": 17_492}
    folds = summary["folds"]
    assert list(folds) == ["0", "1", "2", "3", "4"]
    assert all(set(counts) == FOLD_FIELDS for counts in folds.values())
    column = {name: [folds[str(k)][name] for k in range(5)] for name in FOLD_FIELDS}
    assert column["rows"] == [4496, 3745, 3953, 3459, 3834]
    assert column["labelled"] == [4007, 3624, 3191, 3318, 3463]  # 17,603: Levi & Hassner's lists
    assert column["unique_labelled"] == [3995, 3609, 3137, 3306, 3445]  # 17,492: the cleaned Adience
    assert column["images_found"] == column["unique_labelled"]
    assert sum(column["users"]) == 168 and summary["users_in_several_folds"] == 0
    # Published for the cleaned Adience: 8,120 male / 9,372 female. The fold files give
    # 8,124 / 9,368 (4 faces apart, also with awk | sort -u); we print what the files hold.
    assert (sum(column["male"]), sum(column["female"])) == (8124, 9368)
    assert [m + f for m, f in zip(column["male"], column["female"], strict=True)] == column["unique_labelled"]
    assert summary["skipped"] == {"duplicate": 117, "no_gender": 1878}
    assert summary["converted"] == {}


def test_summarize_table_and_keep_duplicates(official_with_stand_ins, capsys):
    assert main(["summarize", str(official_with_stand_ins), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "| all    | 19,487 |     17,603 |            17,492 |" in text
    for figure in ("4,007", "3,624", "3,191", "3,318", "3,463", "3,995", "3,609", "3,137", "3,306", "3,445"):
        assert figure in text
    assert "duplicate: 117" in text and "no_gender: 1,878" in text
    assert "Counting: each face once: 17,492 unique gender-labelled faces" in text
    assert main(["summarize", str(official_with_stand_ins), "--json", "--keep-duplicates"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert "duplicate" not in kept["skipped"]
    assert kept["counting"] == {"keep_duplicates": True, "listed_rows": 17_603, "unique_faces": 17_492}
    assert main(["summarize", str(official_with_stand_ins), "--keep-duplicates"]) == 0
    assert "Counting: duplicates kept: 17,603 gender-labelled rows" in capsys.readouterr().out


def test_summarize_synthetic(small_synthetic, capsys):
    assert main(["summarize", str(small_synthetic), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for counts in summary["folds"].values():
        assert counts["rows"] == 48 and counts["users"] == 8
        assert counts["images_found"] == counts["unique_labelled"] == counts["male"] + counts["female"]
    assert set(summary["skipped"]) <= {"no_gender"}


@pytest.mark.slow
def test_summarize_accepts_the_word_synthetic():
    # the built-in default dataset (generated into the test session's cache on first use)
    result = run_summarize("synthetic", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert sum(counts["rows"] for counts in summary["folds"].values()) == 1000
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: command"),
        (["summarise", "x"], "invalid choice: 'summarise'"),
        (["summarize"], "the following arguments are required: path"),
        (["summarize", "/nonexistent/adience"], "dataset folder /nonexistent/adience does not exist"),
        (["summarize", "x", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(capsys, args, message):
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], captured.err
