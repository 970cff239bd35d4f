"""The peaks each row's MFU is taken against: the GPU's dense datasheet peak per precision
(``bench.trial.mfu.device_peak``) and a matrix-product peak measured on the device in each precision.
Runs in a worker process of its own (Keras imported there only).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from bench.choices import RESOLVED_PRECISIONS

MATMUL_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ROUNDS = 5


@dataclass
class Peaks:
    """precision -> {"flops", "source"}, or {"reason"} where there is none, for each kind."""

    datasheet: dict[str, dict] = field(default_factory=dict)
    datasheet_reason: str | None = "not looked up before the deadline"
    measured: dict[str, dict] = field(default_factory=dict)
    device: str = ""

    def flops(self) -> dict[str, dict[str, float | None]]:
        """datasheet / measured -> precision -> FLOP/s or None (table.summarise reads this)."""
        return {
            kind: {precision: peak.get("flops") for precision, peak in getattr(self, kind).items()}
            for kind in ("datasheet", "measured")
        }

    def describe(self, kind: str) -> str:
        peaks = getattr(self, kind)
        if not peaks:
            return f"n/a ({self.datasheet_reason if kind == 'datasheet' else 'not measured'})"
        return "; ".join(f"{precision} {_peak(**peak)}" for precision, peak in peaks.items())


def _peak(flops: float | None = None, source: str | None = None, reason: str | None = None) -> str:
    return f"{flops / 1e12:.1f} TFLOP/s ({source})" if flops else f"n/a ({reason})"


def measure_matmul_peak(size: int, repeats: int, precision: str) -> float:
    """Best matrix-product FLOP/s on Keras's device in ``precision``: ``repeats`` products of two
    ``size`` x ``size`` matrices per round, the fastest of ``ROUNDS`` after two warm-up rounds."""
    import keras
    from keras import ops

    a = ops.cast(keras.random.normal((size, size), seed=1), MATMUL_DTYPES[precision])
    b = ops.cast(keras.random.normal((size, size), seed=2), MATMUL_DTYPES[precision])

    def finish(x) -> None:
        if hasattr(x, "block_until_ready"):  # JAX: wait for the device, copy nothing back
            x.block_until_ready()
        else:
            ops.convert_to_numpy(x[:1, :1])

    best = math.inf
    for round_ in range(ROUNDS + 2):
        started = time.perf_counter()
        for _ in range(repeats):
            product = ops.matmul(a, b)
        finish(product)
        if round_ >= 2:
            best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 * repeats / best


def find_peaks(precisions: list[str], size: int, repeats: int) -> Peaks:
    """The first visible GPU's datasheet peaks, and a matmul peak measured in each of ``precisions``."""
    from bench.trial.gpu import driver_facts
    from bench.trial.mfu import device_peak

    facts, reason = driver_facts()
    peaks = Peaks(datasheet_reason=None)
    names = facts.get("gpus") or []
    if names:
        peaks.device = names[0]
        for precision in RESOLVED_PRECISIONS:
            peak, why = device_peak(names[0], precision)
            peaks.datasheet[precision] = {"flops": peak.flops, "source": peak.source} if peak else {"reason": why}
    else:
        peaks.datasheet_reason = f"no GPU, so no datasheet peak ({reason})"
    for precision in precisions:
        try:
            flops = measure_matmul_peak(size, repeats, precision)
            source = f"keras.ops.matmul {size}x{size}, best of {ROUNDS} rounds of {repeats}"
            peaks.measured[precision] = {"flops": flops, "source": source}
        except Exception as error:  # a backend without products in this precision on this device
            peaks.measured[precision] = {"reason": f"not measured: {type(error).__name__}: {error}"}
    return peaks
