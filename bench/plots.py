"""The leaderboard's figures: learning curves, and accuracy against params, GFLOPs and
time-to-target with the Pareto front marked. PNGs through matplotlib's Agg canvas.

Figures are drawn on ``matplotlib.figure.Figure`` objects, never through pyplot, so the
harness neither needs a display nor changes the backend of a process that imports it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.io import atomic_write_bytes
from bench.results import groups_table

DPI = 110
PlotEntry = tuple[str, Path | None, str]  # (title, PNG path or None when not drawn, note)


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (x no larger and y no smaller, one strictly),
    in order of x: lower x (cost) and higher y (accuracy) are better."""
    points = [(x, y, i) for i, (x, y) in enumerate(zip(xs, ys, strict=True)) if _finite(x) and _finite(y)]
    front = []
    best_y = -math.inf
    for _, y, index in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best_y:
            front.append(index)
            best_y = y
    return front


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _colours(names: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(names)}


def plot_learning_curves(epochs: pd.DataFrame, target: float, path: Path, title: str) -> Path:
    """Accuracy and loss per epoch: validation solid, training dashed; one colour per report row."""
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    accuracy_axes, loss_axes = figure.subplots(1, 2)
    groups = list(dict.fromkeys(epochs["group"]))
    colours = _colours(groups)
    labelled = set()
    for _, curve in epochs.groupby("trial", sort=True):
        curve = curve.sort_values("epoch")
        group = curve["group"].iloc[0]
        label = None if group in labelled else group
        labelled.add(group)
        colour = colours[group]
        accuracy_axes.plot(curve["epoch"], curve["val_accuracy"], "-o", color=colour, markersize=3, label=label)
        accuracy_axes.plot(curve["epoch"], curve["train_accuracy"], "--", color=colour, alpha=0.6)
        loss_axes.plot(curve["epoch"], curve["val_loss"], "-o", color=colour, markersize=3, label=label)
        loss_axes.plot(curve["epoch"], curve["train_loss"], "--", color=colour, alpha=0.6)
    accuracy_axes.axhline(target, color="grey", linestyle=":", label=f"target {target:.2f}")
    accuracy_axes.plot([], [], "k-", label="validation")
    accuracy_axes.plot([], [], "k--", alpha=0.6, label="training")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy per epoch")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss per epoch")
    for axes in (accuracy_axes, loss_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    accuracy_axes.legend(fontsize="small", loc="lower right")
    figure.suptitle(title)
    return _save(figure, path)


def plot_tradeoff(groups: pd.DataFrame, column: str, scale: float, xlabel: str, path: Path, title: str) -> Path | None:
    """Best val accuracy (mean, CI bars where repeated) against ``column``; None if no row has both."""
    data = groups[groups[column].apply(_finite) & groups["best_val_accuracy"].apply(_finite)]
    if data.empty:
        return None
    xs = (data[column] / scale).tolist()
    ys = data["best_val_accuracy"].tolist()
    errors = [
        (row.best_val_accuracy_ci_high - row.best_val_accuracy_ci_low) / 2
        if _finite(row.best_val_accuracy_ci_low)
        else 0
        for row in data.itertuples(index=False)
    ]
    front = pareto_front(xs, ys)
    figure = Figure(figsize=(7.5, 5.2), layout="constrained")
    axes = figure.subplots()
    axes.errorbar(xs, ys, yerr=errors, fmt="o", color="tab:blue", ecolor="tab:blue", capsize=3, label="report row")
    for x, y, name in zip(xs, ys, data["group"], strict=True):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    front_points = sorted((xs[i], ys[i]) for i in front)
    axes.step(
        [p[0] for p in front_points],
        [p[1] for p in front_points],
        where="post",
        color="tab:red",
        linewidth=1.2,
        label="Pareto front",
    )
    axes.scatter(
        [p[0] for p in front_points],
        [p[1] for p in front_points],
        s=120,
        facecolors="none",
        edgecolors="tab:red",
        linewidths=1.5,
        label="on the Pareto front",
    )
    positive = [x for x in xs if x > 0]
    if positive and len(positive) == len(xs) and max(xs) / min(xs) > 20:
        axes.set_xscale("log")
    axes.set(xlabel=xlabel, ylabel="best validation accuracy", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower right")
    return _save(figure, path)


def write_plots(trials: pd.DataFrame, epochs: pd.DataFrame, target: float, out_dir: Path) -> list[PlotEntry]:
    """Every leaderboard figure into ``out_dir``; a figure without data is listed with the reason."""
    entries: list[PlotEntry] = []
    if epochs.empty:
        entries.append(("Learning curves", None, "no trial reported an epoch"))
    else:
        path = plot_learning_curves(epochs, target, out_dir / "learning_curves.png", "Learning curves")
        entries.append(("Learning curves", path, ""))
    groups = groups_table(trials)
    for column, scale, title, xlabel, name, note in (
        ("params", 1e6, "Accuracy vs parameters", "parameters (millions)", "accuracy_vs_params", ""),
        ("gflops_per_image", 1.0, "Accuracy vs GFLOPs", "forward GFLOPs per image", "accuracy_vs_gflops", ""),
        (
            "time_to_target_seconds",
            1.0,
            "Accuracy vs time to target",
            f"wall seconds to val accuracy {target:.2f}",
            "accuracy_vs_time_to_target",
            "Rows that never reached the target are left out.",
        ),
    ):
        path = plot_tradeoff(groups, column, scale, xlabel, out_dir / f"{name}.png", title)
        if path is None:
            entries.append((title, None, f"no report row has both {xlabel} and an accuracy"))
        else:
            entries.append((title, path, note))
    return entries
