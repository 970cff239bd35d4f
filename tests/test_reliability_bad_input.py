"""A corpus of bad inputs (flags, overrides, data and fold files, run folders, weights paths, specs):
each gives one line saying what is wrong (exit code 2 from the CLI) or a counted skip, never a traceback."""

import json
import os
import shutil
from pathlib import Path

import pytest

import models
from bench.run import main as bench_main
from bench.specs import SpecError, TrialSpec
from data.adience import load_faces


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.fixture
def dataset(small_synthetic, tmp_path):
    """A copy of the small synthetic dataset to damage (images, never changed in place, shared by a link)."""
    root = tmp_path / "adience"
    shutil.copytree(small_synthetic, root, copy_function=_link_or_copy)
    return root


def _link_or_copy(source, target):
    if str(source).endswith(".jpg"):
        try:
            return os.link(source, target)
        except OSError:
            pass
    return shutil.copy2(source, target)


def _remove_fold_file(root):
    (root / "fold_2_data.txt").unlink()


def _empty_fold_file(root):
    (root / "fold_3_data.txt").write_text("")


def _remove_every_image(root):
    shutil.rmtree(root / "faces")


def _garbage_fold_file(root):
    (root / "fold_1_data.txt").write_bytes(b"\x00\xff garbage \x00\n" * 20)


def _damaged_run_json(run):
    (run / "run.json").write_text("{ not json")


def _run_json_of_unknown_suite(run):
    request = {"suite": "nope", "preset": "smoke", "data_root": "", "synthetic": True, "trials": None}
    request |= {"overrides": {}, "asha": False, "scheduling": {}}
    (run / "run.json").write_text(json.dumps(request))


def _run_json_with_unknown_fields(run):
    (run / "run.json").write_text(json.dumps({"suite": "selftest", "evil": "__import__('os')"}))


# (flags, a setup of the dataset or run folder, text the one line must hold)
CLI_CASES = {
    "unknown flag": (["--suite", "selftest", "--bogus"], None, "unrecognized arguments: --bogus"),
    "epochs not a number": (["--suite", "selftest", "--epochs", "two"], None, "invalid int value: 'two'"),
    "epochs zero": (["--suite", "selftest", "--epochs", "0"], None, "--epochs must be >= 1"),
    "learning rate zero": (["--suite", "selftest", "--lr", "0"], None, "--lr must be > 0"),
    "learning rate infinite": (["--suite", "selftest", "--lr", "inf"], None, "--lr must be > 0 and finite, got inf"),
    "learning rate nan": (["--suite", "selftest", "--lr", "nan"], None, "--lr must be > 0 and finite, got nan"),
    "negative seed": (["--suite", "selftest", "--seed", "-1"], None, "--seed must be >= 0, got -1"),
    "repeats zero": (["--suite", "selftest", "--repeats", "0"], None, "--repeats must be >= 1"),
    "validation fold 5": (["--suite", "selftest", "--val-fold", "5"], None, "--val-fold must be 0..4, got 5"),
    "GPU share above one": (["--suite", "selftest", "--gpus-per-trial", "1.5"], None, "must be in (0, 1]"),
    "negative GPU count": (["--suite", "selftest", "--gpus", "-1"], None, "--gpus must be >= 0"),
    "concurrency zero": (["--suite", "selftest", "--max-concurrent", "0"], None, "--max-concurrent must be >= 1"),
    "negative checkpoint interval": (
        ["--suite", "selftest", "--checkpoint-interval", "-5"],
        None,
        "--checkpoint-interval must be seconds >= 0",
    ),
    "unknown suite": (["--suite", "nope"], None, "unknown suite 'nope'"),
    "unknown preset": (["--suite", "selftest", "--preset", "fast"], None, "unknown preset 'fast'"),
    "unknown protocol": (["--suite", "baseline", "--protocol", "levy"], None, "unknown protocol 'levy' (did you mean"),
    "cross-validated protocol with a fold": (
        ["--suite", "baseline", "--protocol", "levi", "--val-fold", "2"],
        None,
        "--protocol levi holds out every fold in turn: drop --val-fold",
    ),
    "paper preset on synthetic data": (["--suite", "baseline", "--preset", "paper"], None, "add --force"),
    "trial filter matching nothing": (["--suite", "selftest", "--trials", "zzz*"], None, "matches no trial"),
    "no suite": (["--epochs", "2"], None, "--suite is required"),
    "out is a file": (["--suite", "selftest", "--out", "{tmp}/a-file"], None, "is a file, not a folder"),
    "data folder missing": (["--suite", "selftest", "--data", "{tmp}/missing"], None, "does not exist"),
    "data path is a file": (["--suite", "selftest", "--data", "{tmp}/a-file"], None, "is not a folder"),
    "fold file missing": (["--suite", "selftest", "--data", "{data}"], _remove_fold_file, "lacks fold files"),
    "fold file empty": (["--suite", "selftest", "--data", "{data}"], _empty_fold_file, "fold_3_data.txt"),
    "fold file garbage": (["--suite", "selftest", "--data", "{data}"], _garbage_fold_file, "fold_1_data.txt"),
    "no image at all": (["--suite", "selftest", "--data", "{data}"], _remove_every_image, "no usable face is left"),
    "resume a folder that is no run": (["--resume", "{tmp}"], None, "is not a run folder"),
    "resume a damaged run.json": (["--resume", "{run}"], _damaged_run_json, "run.json is damaged"),
    "resume a run of an unknown suite": (["--resume", "{run}"], _run_json_of_unknown_suite, "unknown suite 'nope'"),
    "resume a run.json with unknown fields": (["--resume", "{run}"], _run_json_with_unknown_fields, "is damaged"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_cli_input_is_one_line_and_exit_2(case, capsys, tmp_path, request):
    args, setup, expected = CLI_CASES[case]
    (tmp_path / "a-file").write_text("not a folder")
    data = request.getfixturevalue("dataset") if any("{data}" in arg for arg in args) else None
    run = tmp_path / "run"
    run.mkdir()
    if setup is not None:
        setup(data if data is not None else run)
    args = [arg.format(tmp=tmp_path, data=data, run=run) for arg in args]
    if "--out" not in args and "--resume" not in args:
        args += ["--out", str(tmp_path / "runs")]
    assert bench_main(args) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: ") and expected in line, line


def test_out_folder_is_checked_before_any_data_is_read(capsys, tmp_path):
    (tmp_path / "a-file").write_text("")
    args = ["--suite", "selftest", "--out", str(tmp_path / "a-file"), "--data", str(tmp_path / "missing")]
    assert bench_main(args) == 2
    assert "is a file, not a folder" in one_error_line(capsys)


def _garbage(path, content=b"not a weights file"):
    path.write_bytes(content)
    return str(path)


WEIGHTS_CASES = {
    "missing file": (lambda tmp: str(tmp / "missing.weights.h5"), "does not exist"),
    "unknown format": (lambda tmp: _garbage(tmp / "weights.pkl"), "weights file must end in .weights.h5, .keras"),
    "a folder": (lambda tmp: str(tmp), "weights file must end in"),
    "garbage .weights.h5": (lambda tmp: _garbage(tmp / "bad.weights.h5"), "is not a readable Keras weights file"),
    "garbage .keras": (lambda tmp: _garbage(tmp / "bad.keras"), "is not a readable Keras weights file"),
    "ImageNet for a model without": (lambda tmp: "imagenet", "no ImageNet weights exist for it"),
    "not a path": (lambda tmp: 3, "weights must be None, 'imagenet' or a file path"),
}


@pytest.mark.parametrize("case", list(WEIGHTS_CASES))
def test_bad_weights_paths_are_one_line_errors(case, tmp_path):
    make, expected = WEIGHTS_CASES[case]
    with pytest.raises(models.ModelOptionError) as caught:
        models.create_model("levi_hassner", input_size=64, weights=make(tmp_path))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"seed": -3}, "seed must be an integer >= 0"),
        ({"learning_rate": float("inf")}, "learning_rate must be > 0 and finite"),
        ({"name": "../escape"}, "name must be letters, digits"),
    ],
)
def test_bad_spec_overrides_are_one_line_spec_errors(changes, expected):
    with pytest.raises(SpecError, match=expected) as caught:
        TrialSpec(**{"name": "t", "model": "tiny_cnn", **changes})
    assert "\n" not in str(caught.value)


def test_fold_rows_reaching_outside_the_dataset_are_counted_skips(dataset):
    fold = dataset / "fold_0_data.txt"
    lines = fold.read_text().splitlines()
    fields = lines[1].split("\t")
    escapes = [("..", fields[1]), (fields[0], "../../../etc/passwd"), ("/etc", fields[1]), (fields[0], "a/../../b.jpg")]
    for user_id, image in escapes:
        lines.append("\t".join([user_id, image, *fields[2:]]))
    fold.write_text("\n".join(lines) + "\n")
    faces = load_faces(dataset)
    assert faces.skipped["unsafe_path"] == len(escapes)
    inside = dataset.resolve()
    assert all(Path(path).resolve().is_relative_to(inside) for path in faces.faces["path"])


@pytest.mark.parametrize(
    ("raised", "code", "expected"),
    [
        (RuntimeError("a bug we did not foresee"), 1, "unexpected error: RuntimeError: a bug we did not foresee"),
        (KeyboardInterrupt(), 130, "interrupted: finish it later with --resume RUN_DIR"),
    ],
)
def test_an_unexpected_error_is_one_line_naming_its_traceback_log(raised, code, expected, capsys, monkeypatch):
    import bench.plan.planner

    def plan_run(request):  # stands in for a failure no check foresaw, inside the real CLI
        raise raised

    monkeypatch.setattr(bench.plan.planner, "plan_run", plan_run)
    assert bench_main(["--suite", "selftest"]) == code
    line = one_error_line(capsys)
    assert line.startswith(expected), line
    if code == 1:
        log = Path(line.rsplit("(traceback in ", 1)[1].rstrip(")"))
        text = log.read_text()
        assert text.startswith("Traceback") and "RuntimeError: a bug we did not foresee" in text
        log.unlink()
