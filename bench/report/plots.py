"""The leaderboard's figures: learning curves per row, the run's ranking score against time
to target, parameters and GFLOPs with the Pareto front and the budgets drawn, and each row's
confusion matrix as a heatmap. PNGs through Agg.

Every point carries its row's number from the leaderboard's tables, placed where it hides no
other number or point, and a legend outside the axes keys the numbers to the rows. Figures
are drawn on ``matplotlib.figure.Figure`` objects, never through pyplot, so the harness
neither needs a display nor changes the backend of a process that imports it. Each plot
function returns what it drew (``Drawn``), so tests can read the figure back.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.io import atomic_write_bytes
from bench.plan.goals import Goals
from bench.report.groups import groups_table
from bench.scores import parse_confusion

DPI = 110
PlotEntry = tuple[str, Path | None, str]  # (title, PNG path or None when not drawn, note)
# where a number may sit around its point, in points: nearest first, then further out
LABEL_OFFSETS = [(dx * r, dy * r) for r in (1, 2, 3) for dx, dy in ((5, 4), (5, -11), (-12, 4), (-12, -11), (7, -4))]


@dataclass(frozen=True)
class DrawnPoint:
    number: int  # the row's number in the leaderboard's tables
    group: str
    x: float
    y: float


@dataclass
class Drawn:
    """What a plot drew: its points, where their numbers landed (display boxes), whether any overlap."""

    path: Path
    points: list[DrawnPoint] = field(default_factory=list)
    label_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    overlapping_labels: int = 0
    points_inside_axes: bool = True
    lines: list[str] = field(default_factory=list)  # budget and target lines drawn, by legend label
    legend_outside_axes: bool = False
    loss_scale: str = ""  # the learning curves' loss axis


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
    # every figure lays itself out (layout="constrained"): a "tight" bounding box would draw it twice
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _colours(names: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(names)}


def _overlaps(box, others) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in others)


def _place_numbers(figure: Figure, axes, points: Sequence[DrawnPoint], drawn: Drawn) -> None:
    """Each point's number beside it, at the first offset that overlaps no other number or point."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    to_display = axes.transData.transform
    frame = axes.get_window_extent(renderer)
    markers = [(x - 4, y - 4, x + 4, y + 4) for x, y in (to_display((p.x, p.y)) for p in points)]
    for point in points:
        label = None
        for dx, dy in LABEL_OFFSETS:
            if label is not None:
                label.remove()
            label = axes.annotate(
                str(point.number), (point.x, point.y), textcoords="offset points", xytext=(dx, dy), fontsize=8
            )
            extent = label.get_window_extent(renderer)
            box = (extent.x0, extent.y0, extent.x1, extent.y1)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not _overlaps(box, drawn.label_boxes) and not _overlaps(box, markers):
                break
        else:
            drawn.overlapping_labels += 1
        drawn.label_boxes.append(box)


def plot_tradeoff(
    groups: pd.DataFrame,
    numbers: Mapping[str, int],
    column: str,
    scale: float,
    xlabel: str,
    path: Path,
    title: str,
    accuracy_budget: float | None = None,
    x_budget: float | None = None,
    metric_words: str = "accuracy",
) -> Drawn | None:
    """Best val score of the ranking metric (mean, CI bars where repeated) against ``column``:
    numbered points, the Pareto front, the budgets as lines; None if no row has both figures."""
    data = groups[groups[column].apply(_finite) & groups["best_score"].apply(_finite)]
    if data.empty:
        return None
    points = sorted(
        (
            DrawnPoint(numbers[row.group], row.group, getattr(row, column) / scale, row.best_score)
            for row in data.itertuples(index=False)
        ),
        key=lambda p: p.number,
    )
    drawn = Drawn(path, points)
    errors = {
        row.group: (row.best_score_ci_high - row.best_score_ci_low) / 2 if _finite(row.best_score_ci_low) else 0
        for row in data.itertuples(index=False)
    }
    figure = Figure(figsize=(9, 5.4), layout="constrained")
    axes = figure.subplots()
    xs, ys = [p.x for p in points], [p.y for p in points]
    axes.errorbar(xs, ys, yerr=[errors[p.group] for p in points], fmt="o", color="tab:blue", capsize=3, zorder=3)
    front = sorted((xs[i], ys[i]) for i in pareto_front(xs, ys))
    axes.step([x for x, _ in front], [y for _, y in front], where="post", color="tab:red", linewidth=1.2)
    axes.scatter([x for x, _ in front], [y for _, y in front], s=120, facecolors="none", edgecolors="tab:red")
    handles = [Line2D([], [], color="tab:red", marker="o", markerfacecolor="none", label="Pareto front")]
    if accuracy_budget is not None:
        axes.axhline(accuracy_budget, color="tab:green", linestyle="--", linewidth=1)
        label = f"{metric_words} budget {accuracy_budget:g}"
        handles.append(Line2D([], [], color="tab:green", linestyle="--", label=label))
    if x_budget is not None:
        axes.axvline(x_budget / scale, color="tab:orange", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="tab:orange", linestyle="--", label=f"budget {x_budget / scale:g}"))
    drawn.lines = [handle.get_label() for handle in handles[1:]]
    positive = [x for x in xs if x > 0]
    if positive and len(positive) == len(xs) and max(xs) / min(xs) > 20:
        axes.set_xscale("log")
    axes.margins(x=0.12, y=0.12)
    axes.set(xlabel=xlabel, ylabel=f"best validation {metric_words}", title=title)
    axes.grid(alpha=0.3)
    rows = [Line2D([], [], linestyle="none", label=f"{p.number}  {p.group}") for p in points]
    legend = figure.legend(handles=handles + rows, loc="outside right upper", fontsize="small", handlelength=1.2)
    _place_numbers(figure, axes, points, drawn)
    drawn.legend_outside_axes = _outside(legend, [axes])
    (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
    drawn.points_inside_axes = all(x0 <= p.x <= x1 and y0 <= p.y <= y1 for p in points)
    _save(figure, path)
    return drawn


def plot_learning_curves(epochs: pd.DataFrame, numbers: Mapping[str, int], target: float, path: Path) -> Drawn:
    """Accuracy and loss per epoch, one colour per row (validation solid, training dashed), losses
    on a log scale; the legend, keyed by row number, outside the axes."""
    figure = Figure(figsize=(13, 5), layout="constrained")
    accuracy_axes, loss_axes = figure.subplots(1, 2)
    groups = sorted(dict.fromkeys(epochs["group"]), key=lambda group: numbers.get(group, math.inf))
    colours = _colours(groups)
    for _, curve in epochs.groupby("trial", sort=True):
        curve = curve.sort_values("epoch")
        colour = colours[curve["group"].iloc[0]]
        accuracy_axes.plot(curve["epoch"], curve["val_accuracy"], "-o", color=colour, markersize=3)
        accuracy_axes.plot(curve["epoch"], curve["train_accuracy"], "--", color=colour, alpha=0.6)
        for column, style in (("val_loss", "-o"), ("train_loss", "--")):
            loss = curve[column].where(curve[column].gt(0) & curve[column].lt(math.inf))  # a log scale shows > 0
            loss_axes.plot(curve["epoch"], loss, style, color=colour, markersize=3, alpha=1 if style == "-o" else 0.6)
    beyond = _clip_losses(loss_axes, epochs, numbers)
    accuracy_axes.axhline(target, color="grey", linestyle=":")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy per epoch")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss (log scale)", title="Loss per epoch", yscale="log")
    for axes in (accuracy_axes, loss_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    handles = [
        Line2D([], [], color="grey", linestyle=":", label=f"target {target:.2f}"),
        Line2D([], [], color="black", linestyle="-", label="validation"),
        Line2D([], [], color="black", linestyle="--", alpha=0.6, label="training"),
    ]
    handles += [Line2D([], [], color=colours[g], label=f"{numbers.get(g, '?')}  {g}") for g in groups]
    if beyond:
        handles.append(Line2D([], [], linestyle="none", label=f"loss above the axis: {beyond}"))
    legend = figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    figure.suptitle("Learning curves")
    FigureCanvasAgg(figure).draw()
    drawn = Drawn(path, lines=[h.get_label() for h in handles], loss_scale=loss_axes.get_yscale())
    drawn.legend_outside_axes = _outside(legend, [accuracy_axes, loss_axes])
    _save(figure, path)
    return drawn


def _clip_losses(axes, epochs: pd.DataFrame, numbers: Mapping[str, int]) -> str:
    """Keep the loss axis to where most curves are: a diverging trial's 1e18 would flatten the
    rest even on a log scale. Returns which rows went above it (by number), "" when none."""
    values = pd.concat([epochs["val_loss"], epochs["train_loss"]])
    values = values[values.gt(0) & values.lt(math.inf)]
    if values.empty:
        return ""
    top = min(float(values.max()), float(values.quantile(0.9)) * 100)
    axes.set_ylim(float(values.min()) / 2, top * 2)
    above = epochs[epochs["val_loss"].gt(top * 2) | epochs["train_loss"].gt(top * 2)]["group"]
    return ", ".join(f"#{numbers.get(group, '?')}" for group in dict.fromkeys(above))


def _outside(legend, axes_list) -> bool:
    """Whether the (drawn) legend lies right of every axes: it covers no point."""
    right = max(axes.get_window_extent().x1 for axes in axes_list)
    return legend.get_window_extent().x0 >= right


# (column, scale, title, x label, file name, the Goals field drawn as its budget, note)
TRADEOFFS = (
    (
        "time_to_target_seconds",
        1.0,
        "{Metric} vs time to target",
        "wall seconds to val {metric} {target:.2f}",
        "accuracy_vs_time_to_target",
        "time",
        "Rows that never reached the target are left out.",
    ),
    ("params", 1e6, "{Metric} vs parameters", "parameters (millions)", "accuracy_vs_params", "params", ""),
    ("gflops_per_image", 1.0, "{Metric} vs GFLOPs", "forward GFLOPs per image", "accuracy_vs_gflops", None, ""),
)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], title: str, path: Path) -> Path:
    """A confusion matrix as a heatmap: each cell coloured by its share of the true class's images
    (a row's diagonal cell is that class's recall), its count written in where the classes are few."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = min(3.2 + 0.45 * len(class_names), 14)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45 if len(class_names) > 4 else 0, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    if len(class_names) <= CONFUSION_COUNTS_UP_TO:
        for (true, predicted), count in np.ndenumerate(counts):
            colour = "white" if shares[true, predicted] > 0.6 else "black"
            axes.text(predicted, true, f"{count:.0f}", ha="center", va="center", color=colour, fontsize="small")
    return _save(figure, path)


CONFUSION_COUNTS_UP_TO = 20  # classes whose cells get their count written in


def confusion_plots(
    groups: pd.DataFrame, numbers: Mapping[str, int], class_names: Sequence[str], out_dir: Path
) -> list[PlotEntry]:
    """One heatmap per row with a confusion matrix of ``class_names``' size, in row-number order."""
    entries = []
    for row in sorted(groups.itertuples(index=False), key=lambda row: numbers.get(row.group, math.inf)):
        matrix = parse_confusion(row.val_confusion)
        if matrix is None or len(matrix) != len(class_names):
            continue
        number = numbers.get(row.group, 0)
        title = f"Confusion matrix: #{number} {row.group}"
        entries.append((title, plot_confusion(matrix, class_names, title, out_dir / f"confusion_{number}.png"), ""))
    return entries


def write_plots(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    goals: Goals,
    numbers: Mapping[str, int],
    out_dir: Path,
    class_names: Sequence[str] = (),
    groups: pd.DataFrame | None = None,
) -> list[PlotEntry]:
    """Every leaderboard figure into ``out_dir``, points numbered by ``numbers`` (row -> number);
    a figure without data is listed with the reason. ``groups``: the trials' report rows where
    the caller has them already (``groups_table``)."""
    groups = groups_table(trials) if groups is None else groups
    entries: list[PlotEntry] = []
    if epochs.empty:
        entries.append(("Learning curves", None, "no trial reported an epoch"))
    else:
        drawn = plot_learning_curves(epochs, numbers, goals.target_accuracy, out_dir / "learning_curves.png")
        entries.append(("Learning curves", drawn.path, ""))
    for column, scale, title, xlabel, name, budget, note in TRADEOFFS:
        words = {"metric": goals.metric_words, "Metric": goals.metric_words[:1].upper() + goals.metric_words[1:]}
        title, xlabel = title.format(**words), xlabel.format(target=goals.target_accuracy, **words)
        x_budget = getattr(goals, budget) if budget else None
        path = out_dir / f"{name}.png"
        drawn = plot_tradeoff(
            groups, numbers, column, scale, xlabel, path, title, goals.accuracy, x_budget, goals.metric_words
        )
        if drawn is None:
            entries.append((title, None, f"no report row has both {xlabel} and an accuracy"))
        else:
            entries.append((title, drawn.path, note))
    return entries + confusion_plots(groups, numbers, class_names, out_dir)
