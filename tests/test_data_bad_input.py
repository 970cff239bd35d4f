"""Every kind of bad input: a counted skip with its reason, a conversion, or a one-line error."""

import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from bench.run import main as bench_main
from bench.specs import TrialSpec
from bench.trial.fit import run_trial
from data.__main__ import main as data_main
from data.adience import DatasetError, load_faces
from data.cache import ensure_cache
from data.summary import summarize

ESCAPE_TARGET = "landmark_aligned_face.1.escape_o.jpg"


def jpeg_bytes(image: Image.Image, fmt="JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def one_error_line(capsys):
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0], captured.out


@pytest.fixture(scope="module")
def clean(small_synthetic):
    return load_faces(small_synthetic)


@pytest.fixture(scope="module")
def bad_dataset(small_synthetic, clean, tmp_path_factory):
    """small_synthetic with one of every bad image and bad fold line, and fold 2 in CRLF."""
    root = tmp_path_factory.mktemp("bad") / "adience"
    shutil.copytree(small_synthetic, root)
    faces = clean.faces[clean.faces["fold"] == 0].reset_index(drop=True)
    paths = [root / "faces" / row.user_id / row.path.rsplit("/", 1)[1] for row in faces.itertuples()]
    picture = Image.open(paths[8]).convert("RGB")
    good = paths[8].read_bytes()
    paths[0].write_bytes(np.random.default_rng(0).bytes(4000))  # corrupt
    paths[1].write_bytes(good[: len(good) // 2])  # truncated
    paths[2].write_bytes(b"")  # zero bytes
    paths[3].unlink()  # missing
    paths[4].write_bytes(jpeg_bytes(picture.convert("L")))  # grayscale
    paths[5].write_bytes(jpeg_bytes(picture.convert("CMYK")))  # CMYK
    paths[6].write_bytes(jpeg_bytes(picture.convert("RGBA"), "PNG"))  # RGBA, PNG under .jpg
    paths[7].write_bytes(jpeg_bytes(picture, "PNG"))  # PNG under .jpg
    # a valid image just outside faces/: an escaping row must not reach it
    (root / ESCAPE_TARGET).write_bytes(good)

    fold1 = root / "fold_1_data.txt"
    lines = fold1.read_text().splitlines()
    labelled = next(line for line in lines[1:] if line.split("\t")[4] in ("m", "f"))
    fields = labelled.split("\t")

    def variant(**changes):
        columns = ("user_id", "original_image", "face_id", "age", "gender")
        out = list(fields)
        for name, value in changes.items():
            out[columns.index(name)] = value
        return "\t".join(out)

    lines += [
        "\t".join(fields[:5]),  # too few columns
        labelled + "\textra",  # too many columns
        variant(face_id="901", gender="x"),  # gender other than m/f/u/empty
        variant(face_id="902", gender="male"),
        labelled,  # duplicate
        labelled,  # and again
        variant(user_id="..", original_image="escape_o.jpg", face_id="1"),  # escapes faces/
        variant(user_id="/etc", face_id="903"),  # absolute
        variant(original_image="../../../etc/passwd", face_id="904"),
        variant(face_id="1/../../x", original_image="y.jpg"),
    ]
    fold1.write_text("\n".join(lines) + "\n")
    fold2 = root / "fold_2_data.txt"
    fold2.write_bytes(fold2.read_bytes().replace(b"\n", b"\r\n"))
    return root


IMAGE_PROBLEMS = {"corrupt_image": 1, "truncated_image": 1, "empty_image": 1, "missing_image": 1}
ROW_PROBLEMS = {"bad_columns": 2, "bad_gender": 2, "duplicate": 2, "unsafe_path": 4}
CONVERSIONS = {"grayscale": 1, "cmyk": 1, "alpha": 1, "not_jpeg": 2}


def test_summary_counts_every_bad_input_by_reason(bad_dataset, clean):
    summary = summarize(bad_dataset, workers=2)
    expected = {**ROW_PROBLEMS, **IMAGE_PROBLEMS, "no_gender": clean.skipped.get("no_gender", 0)}
    assert summary.skipped == {reason: count for reason, count in expected.items() if count}
    assert summary.converted == CONVERSIONS
    assert summary.folds[0]["images_found"] == clean.folds[0].unique_labelled - 4
    assert summary.folds[1]["rows"] == clean.folds[1].rows + 10
    assert summary.folds[1]["unique_labelled"] == clean.folds[1].unique_labelled
    for fold in (1, 2, 3, 4):
        assert summary.folds[fold]["images_found"] == clean.folds[fold].unique_labelled
    assert summary.users_in_several_folds == 0
    assert "fold_1_data.txt line" in summary.examples["bad_columns"]


def test_windows_line_endings_read_like_unix_ones(bad_dataset, clean):
    assert b"\r\n" in (bad_dataset / "fold_2_data.txt").read_bytes()
    table = load_faces(bad_dataset)
    assert table.folds[2] == clean.folds[2]
    ours = table.faces[table.faces["fold"] == 2]
    theirs = clean.faces[clean.faces["fold"] == 2]
    assert list(ours["original_image"]) == list(theirs["original_image"])
    assert not ours["original_image"].str.contains("\r").any()


def test_cache_skips_unreadable_images_and_converts_the_others(bad_dataset, clean, tmp_path):
    cache = ensure_cache(bad_dataset, cache_root=tmp_path, workers=2)
    assert cache.skipped == IMAGE_PROBLEMS
    assert cache.converted == CONVERSIONS
    assert len(cache.faces) == len(clean.faces) - 4
    assert not cache.faces["path"].str.contains("escape").any()
    grey = cache.faces[cache.faces["original_image"] == clean.faces[clean.faces["fold"] == 0].iloc[4]["original_image"]]
    pixels = cache.read(grey["slot"])[0].astype(int)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    warnings = load_faces(bad_dataset).warnings() + cache.warnings()
    for reason in [*ROW_PROBLEMS, *IMAGE_PROBLEMS, *CONVERSIONS]:
        assert sum(f" {reason} (" in line for line in warnings) == 1, reason
    assert all(line.startswith("warning: ") and "\n" not in line for line in warnings)


def test_summarize_command_reports_bad_input_without_a_traceback(bad_dataset, capsys):
    assert data_main(["summarize", str(bad_dataset)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    for reason in [*ROW_PROBLEMS, *IMAGE_PROBLEMS]:
        assert f"  {reason}: " in captured.out
    assert "Converted (used):" in captured.out and "  grayscale: 1" in captured.out


@pytest.mark.slow
def test_a_trial_trains_on_the_bad_dataset_without_crashing(bad_dataset):
    # fold 0 holds the bad images, fold 1 the bad lines
    spec = TrialSpec(name="bad", model="levi_hassner", epochs=1, batch_size=8, val_fold=1, train_folds=(0,))
    reports = []
    run_trial(spec, ensure_cache(bad_dataset), reports.append)
    assert [r["epoch"] for r in reports] == [1]


@pytest.mark.parametrize("content", ["", "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang"])
def test_an_empty_fold_is_one_line_naming_the_file(small_synthetic, tmp_path, capsys, content):
    root = tmp_path / "adience"
    shutil.copytree(small_synthetic, root, ignore=shutil.ignore_patterns("faces"))
    header = (root / "fold_3_data.txt").read_text().splitlines()[0]
    (root / "fold_3_data.txt").write_text(header + "\n" if content else "")
    assert data_main(["summarize", str(root)]) == 2
    line, _ = one_error_line(capsys)
    assert "fold_3_data.txt" in line and "empty fold" in line


def test_a_missing_fold_file_is_one_line_naming_it(small_synthetic, tmp_path, capsys):
    root = tmp_path / "adience"
    shutil.copytree(small_synthetic, root, ignore=shutil.ignore_patterns("faces"))
    (root / "fold_2_data.txt").unlink()
    assert data_main(["summarize", str(root), "--json"]) == 2
    line, out = one_error_line(capsys)
    assert line == f"error: {root} lacks fold files fold_2_data.txt" and out == ""


def test_nothing_usable_left_is_one_line(small_synthetic, tmp_path, capsys):
    root = tmp_path / "adience"
    shutil.copytree(small_synthetic, root, ignore=shutil.ignore_patterns("faces"))
    with pytest.raises(DatasetError, match="no usable face is left \\(skipped: .*missing_image"):
        ensure_cache(root, cache_root=tmp_path / "cache")
    assert data_main(["summarize", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "error: no usable labelled face with an image in "
        "fold_0_data.txt, fold_1_data.txt, fold_2_data.txt, fold_3_data.txt, fold_4_data.txt"
    ]


def test_a_run_prints_one_warning_per_reason_then_a_one_line_error(bad_dataset, tmp_path, capsys):
    # fold 3 loses every image: validating on it leaves nothing, found before any trial starts
    root = tmp_path / "adience"
    shutil.copytree(bad_dataset, root)
    for row in load_faces(root).faces.query("fold == 3").itertuples():
        (root / "faces" / row.user_id / row.path.rsplit("/", 1)[1]).unlink()
    assert bench_main(["--suite", "baseline", "--data", str(root), "--val-fold", "3", "--out", str(tmp_path)]) == 2
    line, out = one_error_line(capsys)
    assert line == "error: validation fold 3 (fold_3_data.txt) has no usable labelled faces"
    warnings = [text for text in out.splitlines() if text.startswith("warning: ")]
    reasons = [re.match(r"warning: (?:skipped|converted) \d+ (?:rows|faces): (\w+) \(", text)[1] for text in warnings]
    assert len(reasons) == len(set(reasons))
    assert set(ROW_PROBLEMS) | {"missing_image", "grayscale"} <= set(reasons)


def test_val_fold_out_of_range_is_one_line(capsys):
    assert bench_main(["--suite", "baseline", "--val-fold", "5"]) == 2
    assert one_error_line(capsys)[0] == "error: --val-fold must be 0..4, got 5"
