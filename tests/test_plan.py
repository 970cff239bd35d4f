"""Planning a run once: the request, its scheduling, the plan, and the command line that drives them."""

import json

import pytest

from bench.plan import planner as planning
from bench.plan.planner import RunRequest, Scheduling, plan_run
from bench.report.results import TrialRecord
from bench.run import build_parser, main
from bench.specs import Problem, SpecError, TrialSpec
from tests.test_results_and_leaderboard import epoch


def request(**changes) -> RunRequest:
    fields = {"suite": "selftest", "preset": "smoke", "data_root": "", "synthetic": True, "trials": None}
    return RunRequest(**{**fields, "overrides": {}, "asha": False, **changes})


def test_a_request_round_trips_through_run_json(tmp_path):
    asked = request(scheduling=Scheduling(max_concurrent=2, gpus_per_trial="auto", seed=3), repeats=2, cv=True)
    (tmp_path / "run.json").write_text(asked.to_json())
    assert RunRequest.from_file(tmp_path / "run.json") == asked
    assert json.loads(asked.to_json())["scheduling"]["gpus_per_trial"] == "auto"


@pytest.mark.parametrize(
    ("make", "field", "text"),
    [
        (lambda: Scheduling(max_concurrent=0), "max_concurrent", "max_concurrent must be an integer >= 1 or None"),
        (lambda: Scheduling(num_gpus=-1), "num_gpus", "num_gpus must be an integer >= 0 or None"),
        (lambda: Scheduling(gpus_per_trial=0), "gpus_per_trial", "gpus_per_trial must be in (0, 1], got 0"),
        (lambda: request(repeats=0), "repeats", "repeats must be an integer >= 1, got 0"),
    ],
)
def test_each_bound_is_checked_where_it_is_declared(make, field, text):
    with pytest.raises(SpecError) as caught:
        make()
    assert [problem.field for problem in caught.value.problems] == [field]
    assert text in str(caught.value)


def test_a_problem_is_said_of_the_flag_that_set_its_field():
    error = SpecError.of("trial t", [Problem("learning_rate", "> 0 and finite", float("inf"), kind="a number")])
    assert str(error) == "trial t: learning_rate must be a number > 0 and finite, got inf"
    assert error.said_of_flags({"learning_rate": "--lr"}) == "--lr must be > 0 and finite, got inf"
    assert error.said_of_flags({}) == str(error)  # a problem no flag caused stays the spec's


def test_the_plan_holds_every_trial_once_with_the_suites_scheduling():
    planned = plan_run(request(repeats=2, overrides={"epochs": 3}))
    names = [spec.name for spec in planned.all_specs]
    assert len(names) == 8 and len(set(names)) == 8  # four rows x two seeds
    assert all(spec.epochs == 3 and spec.group for spec in planned.all_specs)
    assert planned.scheduling.asha and planned.scheduling.asha_grace_period == 2  # the selftest suite asks for it


def test_an_override_that_breaks_a_bound_names_its_field():
    with pytest.raises(SpecError) as caught:
        plan_run(request(overrides={"batch_size": 0}))
    assert {problem.field for problem in caught.value.problems} == {"batch_size"}


def test_the_model_declares_the_normalisation_a_spec_gets():
    assert TrialSpec(name="r", model="resnet50_v2").normalisation == "minus_one_to_one"
    assert TrialSpec(name="m", model="mobilenet_v3_large").normalisation == "none"
    assert TrialSpec(name="l", model="levi_hassner").normalisation == "per_image"
    assert TrialSpec(name="c", model="levi_hassner", normalisation="per_channel").normalisation == "per_channel"


def test_help_says_what_the_command_does_and_ends_with_four_examples():
    text = build_parser().format_help()
    description = text.split("\n\n")[1]
    assert description.startswith("Train and profile every trial of a suite") and "LEADERBOARD.md" in description
    examples = text.rstrip().split("examples:\n", 1)[1].splitlines()
    assert len(examples) == 4 and all(line.strip().startswith("python -m bench.run --suite") for line in examples)
    assert "--backend jax" in examples[-1]
    assert "``" not in text  # no reST markup from a docstring


def test_a_run_is_planned_once_and_its_leaderboard_written(tmp_path, small_synthetic, monkeypatch, capsys):
    """The whole command, in process, with the runner replaced by one that reports two epochs per trial."""
    import bench.execute.runner

    calls = []
    real_plan_run = planning.plan_run

    def counting_plan_run(asked):
        calls.append(asked)
        return real_plan_run(asked)

    def fake_run_plan(planned, cache, run_dir, *, resume=False, estimates=None):
        assert len(cache.faces) > 0  # the trials get the decoded cache, not a path
        return [TrialRecord(spec=spec, epochs=[epoch(1, 0.7), epoch(2, 0.8)]) for spec in planned.all_specs]

    monkeypatch.setattr(planning, "plan_run", counting_plan_run)
    monkeypatch.setattr(bench.execute.runner, "run_plan", fake_run_plan)
    args = ["--suite", "selftest", "--data", str(small_synthetic), "--out", str(tmp_path), "--epochs", "2"]
    assert main(args) == 0
    assert len(calls) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("Leaderboard: ") and out[-2].startswith("Done: 4 trial(s): 4 completed")
    run_dir = next(path for path in tmp_path.iterdir() if path.is_dir())
    assert RunRequest.from_file(run_dir / "run.json").overrides == {"epochs": 2}
    assert "| tiny_cnn_adam_lr=0.003" in (run_dir / "LEADERBOARD.md").read_text()
    calls.clear()
    assert main(["--resume", str(run_dir)]) == 0  # planned again from run.json, once
    assert len(calls) == 1


def test_the_levi_protocol_runs_five_folds_and_writes_the_published_comparison(tmp_path, small_synthetic, monkeypatch):
    """``--protocol levi`` through the whole command, the runner replaced: folds, counting and figures."""
    import bench.execute.runner

    planned_trials = []

    def fake_run_plan(planned, cache, run_dir, *, resume=False, estimates=None):
        planned_trials.extend(planned.all_specs)
        last = epoch(2, 0.8, val_accuracy_oversampled=0.81)
        return [TrialRecord(spec=spec, epochs=[epoch(1, 0.7), last]) for spec in planned.all_specs]

    monkeypatch.setattr(bench.execute.runner, "run_plan", fake_run_plan)
    args = ["--suite", "baseline", "--protocol", "levi", "--trials", "levi_hassner_caffe*", "--epochs", "1"]
    assert main([*args, "--data", str(small_synthetic), "--out", str(tmp_path)]) == 0
    assert [spec.val_fold for spec in planned_trials] == [0, 1, 2, 3, 4]
    assert all(spec.keep_duplicates for spec in planned_trials)
    board = next(tmp_path.glob("*/LEADERBOARD.md")).read_text()
    assert "- protocol: Levi & Hassner's: 5-fold cross-validation" in board
    assert "labelled fold lines, duplicates kept" in board
    assert "## Against the published figures" in board and "| 0.8590 ± 0.0140" in board and "0.8680 ± 0.0140" in board
    assert "0.8100 ± 0.0000 [0.8100, 0.8100] n=5" in board  # ours over-sampled, over the five folds


def test_the_metric_flag_reaches_the_request_every_planned_trial_and_the_goals(capsys):
    from bench.plan.command_line import from_args

    asked = from_args(build_parser().parse_args(["--suite", "selftest", "--metric", "macro_f1"]))
    assert asked.metric == "macro_f1"
    plan = plan_run(asked)
    assert plan.metric == "macro_f1" and plan.goals.metric == "macro_f1"
    assert {spec.metric for spec in plan.all_specs} == {"macro_f1"}
    assert {spec.metric for spec in plan_run(request()).all_specs} == {"accuracy"}  # the suite's default
    assert main(["--suite", "selftest", "--metric", "f1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--metric" in error and "invalid choice: 'f1'" in error and "\n" not in error
