"""Fault injection for the reliability tests: a trial that raises, diverges or loses its process at epoch K.

A fault is ``"raise@K"``, ``"missing@K"``, ``"nan@K"`` or ``"kill@K"`` (K counts from 1). ``faulty_trial``
is a trial function (what ``bench.execute.runner.run_trials`` and ``bench.trial.fit.run_trial`` take)
that acts out the faults named per trial, so the tests can check that a bad trial costs
nothing but itself; the harness itself knows nothing of faults.

- ``raise@K``: the trial raises ``InjectedFault`` as epoch K begins (Ray Tune retries it once).
- ``missing@K``: the trial raises ``DatasetError`` as epoch K begins, an error no retry mends
  (the runner reports it once and does not run the trial again).
- ``nan@K``: every weight becomes NaN as epoch K begins, so the loss is NaN from its first step
  (a real divergence, which the trial's reporter stops at the epoch's end).
- ``kill@K``: the trial's process ends with ``os._exit`` as epoch K begins, as an out-of-memory
  kill would end it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from bench.trial.fit import run_trial
from data.adience import DatasetError

FAULT_KINDS = ("raise", "missing", "nan", "kill")
KILL_EXIT_CODE = 137  # what a SIGKILLed process (the OOM killer's) reports
_FAULT = re.compile(r"(?P<kind>[a-z]+)@(?P<epoch>[0-9]+)")


class InjectedFault(RuntimeError):
    """The error a ``raise@K`` fault raises."""


@dataclass(frozen=True)
class Fault:
    kind: str
    epoch: int  # 1-based

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``"raise@2"`` -> Fault("raise", 2); ValueError with a one-line reason otherwise."""
        match = _FAULT.fullmatch(text) if isinstance(text, str) else None
        if match is None or match["kind"] not in FAULT_KINDS or int(match["epoch"]) < 1:
            raise ValueError(
                f"fault must be one of {', '.join(k + '@K' for k in FAULT_KINDS)} with K >= 1, got {text!r}"
            )
        return cls(match["kind"], int(match["epoch"]))


class FaultInjector(keras.callbacks.Callback):
    """Acts out a Fault as its epoch begins."""

    def __init__(self, fault: Fault):
        super().__init__()
        self.fault = fault

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 != self.fault.epoch:
            return
        if self.fault.kind == "raise":
            raise InjectedFault(f"injected fault: raised at epoch {self.fault.epoch}")
        if self.fault.kind == "missing":
            raise DatasetError(f"injected fault: dataset missing at epoch {self.fault.epoch}")
        if self.fault.kind == "kill":
            os._exit(KILL_EXIT_CODE)
        for weight in self.model.trainable_weights:
            weight.assign(np.full(weight.shape, np.nan, dtype=weight.dtype))


def faulty_trial(faults: Mapping[str, str]):
    """A picklable trial function: ``run_trial``, with the fault ``faults[spec.name]`` where there is one."""
    parsed = {name: Fault.parse(text) for name, text in faults.items()}
    return functools.partial(_run_with_faults, parsed)


def _run_with_faults(faults: Mapping[str, Fault], spec, cache, report, **options) -> None:
    fault = faults.get(spec.name)
    run_trial(spec, cache, report, callbacks=[FaultInjector(fault)] if fault else (), **options)
