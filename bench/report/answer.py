"""The leaderboard's opening: the budgets, the rows that meet every one of them ranked (by
the best val score of the run's ranking metric, ties by time-to-target), then the others with
the budgets each misses.

The row numbers given here key every table and plot of the board.
"""

from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from bench.plan.goals import (
    MET,
    MISSED,
    SMOKE,
    UNMEASURED,
    Goals,
    Verdict,
    check_row,
    format_budget_value,
    meets_every_budget,
)
from bench.report.cells import missing

CHECK, CROSS = "✓", "✗"
Ranked = list[tuple[int, object, list[Verdict]]]  # (row number, per-row table row, its verdicts)


SMOKE_SENTENCE = (
    "**A smoke run**: a few epochs on a few images (random weights where a model would start from "
    "ImageNet), so its accuracies check that the whole path works and say nothing of the models; the "
    "accuracy budgets read n/a (smoke)."
)


def ranked_rows(groups: pd.DataFrame, goals: Goals, smoke: bool) -> Ranked:
    """(row number, row, verdicts): the rows meeting every budget first, each part by best val
    score (the ranking metric's; ties by time-to-target); the numbers key the tables and the plots alike."""
    checked = [(row, check_row(row, goals, smoke)) for row in groups.itertuples(index=False)]

    def key(item):
        row, verdicts = item
        score = -row.best_score if not missing(row.best_score) else math.inf
        seconds = row.time_to_target_seconds if not missing(row.time_to_target_seconds) else math.inf
        return (not meets_every_budget(verdicts), score, seconds)

    return [(number, row, verdicts) for number, (row, verdicts) in enumerate(sorted(checked, key=key), start=1)]


def budgets_line(goals: Goals, smoke: bool) -> str:
    said = []
    for kind in goals.active():
        goal = goals.accuracy if kind.name == "accuracy" else getattr(goals, kind.field)
        sign = "<=" if kind.at_most else ">="
        if kind.name == "accuracy" and goal is None:
            said.append(f"{kind.label} >= the published figure for its row (else {goals.target_accuracy:.2f})")
        else:
            said.append(f"{kind.label} {sign} {format_budget_value(kind, goal)}")
        if smoke and kind.accuracy_based:
            said[-1] += " (n/a in a smoke run)"
    target = f"target {goals.metric_words} {goals.target_accuracy:.2f}"
    return f"**Budgets** ({target}): " + "; ".join(said) + "."


def answer_lines(ranked: Ranked, goals: Goals, smoke: bool) -> list[str]:
    meeting = [(n, row, v) for n, row, v in ranked if meets_every_budget(v)]
    rest = [(n, row, v) for n, row, v in ranked if not meets_every_budget(v)]
    lines = ["## The answer: rows that meet every budget", "", budgets_line(goals, smoke), ""]
    if smoke and all(kind.accuracy_based for kind in goals.active()):
        lines += [
            "A smoke run cannot answer this: its only budgets are on accuracy, which it does not measure "
            f"(rows below ranked by best val {goals.metric_words} all the same).",
            "",
        ]
        return lines
    if meeting:
        kinds = goals.active()
        table = []
        for n, row, verdicts in meeting:
            by_name = {verdict.budget.name: verdict for verdict in verdicts}
            cells = [verdict_cell(by_name[kind.name]) if kind.name in by_name else "–" for kind in kinds]
            table.append([str(n), row.group, row.model, *cells])
        headers = ["#", "row", "model", *(kind.label for kind in kinds)]
        lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    else:
        lines += ["No row meets every budget.", ""]
    if rest:
        lines += ["The others, with the budgets each one misses:", ""]
        for n, row, verdicts in rest:
            misses = [v.missed_text() for v in verdicts if v.status in (MISSED, UNMEASURED)]
            why = "; ".join(misses) if row.n_finished else f"no trial finished ({row.status})"
            lines.append(f"- #{n} `{row.group}`: {why}")
        lines.append("")
    return lines


def budget_cell(verdict: Verdict) -> str:
    """A budget's cell beside the figure it checks: met or missed against the budget, not the figure again."""
    if verdict.status in (SMOKE, UNMEASURED):
        return verdict.status
    sign = (
        ("<=" if verdict.budget.at_most else ">=")
        if verdict.status == MET
        else (">" if verdict.budget.at_most else "<")
    )
    goal = format_budget_value(verdict.budget, verdict.goal)
    if verdict.value is None:
        return f"{CROSS} missed: the target never reached"
    return f"{CHECK} met ({sign} {goal})" if verdict.status == MET else f"{CROSS} missed ({sign} {goal})"


def verdict_cell(verdict: Verdict) -> str:
    if verdict.status == SMOKE:
        return SMOKE
    shown = "n/a" if verdict.value is None else format_budget_value(verdict.budget, verdict.value)
    return f"{shown} {CHECK if verdict.status == MET else CROSS}"
