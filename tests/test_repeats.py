"""``--repeats`` and ``--cv``: which trials a run expands to, and the goals passed on."""

import pytest

from bench.plan.planner import expand_specs
from bench.plan.suites import get_suite
from bench.run import main
from bench.specs import TrialSpec


def spec(**changes):
    return TrialSpec(**{"name": "lh", "model": "levi_hassner", "seed": 7, **changes})


def test_no_expansion_keeps_the_specs():
    specs = [spec()]
    assert expand_specs(specs, 1, False) == specs


def test_repeats_run_each_row_with_consecutive_seeds():
    expanded = expand_specs([spec(), spec(name="other", seed=0)], 3, False)
    assert [s.name for s in expanded] == [
        "lh.seed=7",
        "lh.seed=8",
        "lh.seed=9",
        "other.seed=0",
        "other.seed=1",
        "other.seed=2",
    ]
    assert [s.group for s in expanded] == ["lh"] * 3 + ["other"] * 3
    assert {s.val_fold for s in expanded} == {4}


def test_cv_holds_out_each_fold_once():
    expanded = expand_specs([spec()], 1, True)
    assert [s.name for s in expanded] == [f"lh.fold={k}" for k in range(5)]
    for fold, trial in enumerate(expanded):
        assert trial.val_fold == fold and fold not in trial.train_folds and len(trial.train_folds) == 4
        assert trial.group == "lh" and trial.seed == 7


def test_cv_with_repeats_and_flat_dict_round_trip():
    expanded = expand_specs([spec()], 2, True)
    assert len(expanded) == 10 and len({s.name for s in expanded}) == 10
    assert expanded[3].name == "lh.fold=1.seed=8"
    assert all(TrialSpec.from_dict(s.to_dict()) == s for s in expanded)


def test_goals_come_from_the_suite():
    suite = get_suite("baseline")
    synthetic = suite.goals(synthetic=True)
    assert synthetic.accuracy == suite.target_accuracy and synthetic.params == suite.budgets.get("params")
    real = suite.goals(synthetic=False)
    assert real.accuracy is None  # each row's report figure
    assert real.accuracy_goal(0.9498) == 0.9498


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_repeats_give_one_line_and_exit_2(capsys, value):
    assert main(["--suite", "baseline", "--repeats", value]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and f"--repeats must be >= 1, got {value}" in err[0]
