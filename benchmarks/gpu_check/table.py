"""The table: one ``Row`` per planned row, its steady-state figures from the trials' epoch reports, and
the printed markdown table. Imports no Keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from benchmarks.gpu_check.settings import RowPlan


@dataclass
class Row:
    model: str
    precision: str  # as planned; the trial's resolved one once measured
    data: str
    trainers: int
    input_size: int
    batch_size: int
    status: str = "not reached"  # measured, skipped, failed, not reached
    note: str = ""
    first_epoch_s: float | None = None  # epoch 1 (compiles, start-up); packed: the slowest trainer's
    row_s: float | None = None  # the row's wall seconds, process starts to the last steady epoch
    steady_epochs: int | None = None
    images: int | None = None  # trained in the steady epochs, all trainers
    train_seconds: float | None = None  # per trainer, the steady epochs' training seconds (the longest)
    images_per_sec: float | None = None  # steady epochs' training images over their training seconds, summed
    step_ms: float | None = None  # per trainer
    flops_per_image: float | None = None  # forward
    train_flops_per_image: float | None = None  # bench.trial.flops.training_flops
    train_tflops: float | None = None
    mfu_datasheet: float | None = None
    mfu_measured: float | None = None
    power_w: float | None = None  # whole GPU, mean over the steady epochs
    energy_j: float | None = None  # whole GPU, the steady epochs (each trainer's own laps, summed)
    mj_per_image: float | None = None  # whole-GPU power over summed img/s
    gpu_util: float | None = None
    gpu_memory_bytes: float | None = None  # whole GPU, the most used
    infer_images_per_sec: float | None = None  # the trial's inference figure (first trainer)
    gpu_names: str = ""
    nvml_reason: str = ""
    epochs: list[list[dict]] = field(default_factory=list)  # per trainer, the epoch reports' figures

    @classmethod
    def planned(cls, plan: RowPlan, input_size: int, batch_size: int) -> Row:
        return cls(plan.model, plan.precision, plan.data, plan.trainers, input_size, batch_size)

    @property
    def label(self) -> str:
        return f"{self.model} {self.precision} {self.data}" + (f" x{self.trainers}" if self.trainers > 1 else "")


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _mean(values) -> float | None:
    values = [v for v in values if _finite(v)]
    return sum(values) / len(values) if values else None


def summarise(row: Row, reports: list[list[dict]], peaks: dict[str, dict[str, float | None]]) -> None:
    """``row``'s figures from each trainer's epoch reports: epoch 1 apart, the rest steady.

    ``peaks`` maps datasheet / measured -> precision -> FLOP/s (None where there is none)."""
    row.epochs = reports
    steady = [trainer[1:] for trainer in reports]
    if not all(steady):
        row.status, row.note = "failed", "no steady epoch reported"
        return
    first = reports[0][0]
    row.precision, row.data = first.get("precision", row.precision), _placement(first.get("data_on_device"))
    row.first_epoch_s = max(trainer[0]["epoch_seconds"] for trainer in reports)
    row.steady_epochs = len(steady[0])
    row.images = sum(int(e["train_images"]) for trainer in steady for e in trainer)
    # the trial's own timing of its training part (validation excluded; it waits for the device)
    seconds = [sum(e["train_seconds"] for e in trainer) for trainer in steady]
    row.train_seconds = max(seconds)
    row.images_per_sec = sum(
        sum(int(e["train_images"]) for e in trainer) / s for trainer, s in zip(steady, seconds, strict=True)
    )
    steps = sum(math.ceil(int(e["train_images"]) / row.batch_size) for e in steady[0])
    row.step_ms = 1000 * seconds[0] / steps
    row.flops_per_image = first.get("flops_per_image")
    row.train_flops_per_image = flops = first.get("train_flops_per_image")
    if _finite(flops) and flops > 0:
        row.train_tflops = flops * row.images_per_sec / 1e12
        for kind in ("datasheet", "measured"):
            peak = peaks.get(kind, {}).get(row.precision)
            setattr(row, f"mfu_{kind}", flops * row.images_per_sec / peak if peak else None)
    every = [e for trainer in steady for e in trainer]
    row.power_w = _mean(e.get("power_w") for e in every)
    row.gpu_util = _mean(e.get("gpu_util") for e in every)
    energy = [e.get("energy_j") for e in every]
    row.energy_j = sum(energy) if all(_finite(v) for v in energy) else None
    row.mj_per_image = 1000 * row.power_w / row.images_per_sec if row.power_w is not None else None
    memory = [e.get("gpu_memory_bytes") for e in every if _finite(e.get("gpu_memory_bytes"))]
    row.gpu_memory_bytes = max(memory) if memory else None
    row.infer_images_per_sec = first.get("infer_images_per_sec")
    row.gpu_names = first.get("gpu_names", "")
    row.nvml_reason = first.get("nvml_reason", "")
    row.status = "measured"


def _placement(data_on_device: str | None) -> str:
    return {"on": "device", "off": "stream"}.get(data_on_device or "", data_on_device or "?")


def number(value, digits: int, scale: float = 1.0) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value / scale:.{digits}f}"


COLUMNS = (
    ("model", lambda r: r.model),
    ("precision", lambda r: r.precision),
    ("data", lambda r: r.data),
    ("trainers", lambda r: str(r.trainers)),
    ("batch", lambda r: str(r.batch_size)),
    ("input", lambda r: str(r.input_size)),
    ("first epoch s", lambda r: number(r.first_epoch_s, 1)),
    ("row s", lambda r: number(r.row_s, 0)),
    ("train img/s", lambda r: number(r.images_per_sec, 1)),
    ("step ms", lambda r: number(r.step_ms, 2)),
    ("infer img/s", lambda r: number(r.infer_images_per_sec, 0)),
    ("fwd GFLOP/img", lambda r: number(r.flops_per_image, 3, 1e9)),
    ("train TFLOP/s", lambda r: number(r.train_tflops, 2)),
    ("MFU % datasheet", lambda r: number(r.mfu_datasheet, 2, 0.01)),
    ("MFU % measured", lambda r: number(r.mfu_measured, 2, 0.01)),
    ("power W", lambda r: number(r.power_w, 0)),
    ("mJ/img", lambda r: number(r.mj_per_image, 2)),
    ("GPU util %", lambda r: number(r.gpu_util, 0)),
    ("GPU mem GiB", lambda r: number(r.gpu_memory_bytes, 2, 2**30)),
    ("status", lambda r: r.status + (f": {r.note}" if r.note else "")),
)
HEADERS = tuple(header for header, _ in COLUMNS)


def format_row(row: Row) -> str:
    """One row alone, as ``header=value`` pairs (the progress line of a row just measured)."""
    return ", ".join(f"{header} {cell(row)}" for header, cell in COLUMNS[6:-1])


def format_table(rows: list[Row]) -> str:
    """A GitHub-markdown table of every row, measured or not."""
    cells = [list(HEADERS)] + [[cell(row) for _, cell in COLUMNS] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(COLUMNS))]

    def line(values):
        return "| " + " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)) + " |"

    return "\n".join(
        [line(cells[0]), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, cells[1:])]
    )
