"""Evaluation protocols: which folds a row is validated on, how faces are counted, and which
published figures it is compared with.

- ``report``: the report's own (train on folds 0-3, validate on fold 4, each face once);
  each row compares with the report's figure for it.
- ``levi``: Levi & Hassner's (5-fold cross-validation, each fold held out once, the fold
  files' duplicate lines kept as in their per-fold lists); Levi & Hassner's Caffe net and
  solver (``baseline``'s Caffe row) compares with their published gender accuracy, single
  centre crop and over-sampled, as mean ± std over the folds. Other rows have no published
  figure under this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.errors import did_you_mean
from bench.plan.suites import LEVI_HASSNER_CAFFE
from bench.specs import SpecError, TrialSpec


@dataclass(frozen=True)
class Reference:
    """A published figure: accuracy (single centre crop) and over-sampled accuracy, with their spreads."""

    accuracy: float
    accuracy_std: float | None = None
    oversampled: float | None = None
    oversampled_std: float | None = None


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    cross_validation: bool
    keep_duplicates: bool
    counting: str  # how the faces are counted, said in run headers
    references: Mapping[str, Reference] | None = field(default=None)  # by row; None: the suite's own figures

    def apply(self, spec: TrialSpec) -> TrialSpec:
        """``spec`` under this protocol: its face counting and the published figures it compares with."""
        if self.references is None:
            return spec.replace(keep_duplicates=self.keep_duplicates)
        published = self.references.get(spec.name)
        return spec.replace(
            keep_duplicates=self.keep_duplicates,
            reference=published.accuracy if published else None,
            reference_std=published.accuracy_std if published else None,
            reference_oversampled=published.oversampled if published else None,
            reference_oversampled_std=published.oversampled_std if published else None,
            reference_epochs=None,
        )


# Levi & Hassner (2015), gender on the Adience 5-fold protocol: 85.9 ± 1.4 % single crop,
# 86.8 ± 1.4 % over-sampled (../shared/adience/README.md).
LEVI_HASSNER_2015 = Reference(accuracy=0.859, accuracy_std=0.014, oversampled=0.868, oversampled_std=0.014)

PROTOCOLS = {
    "report": Protocol(
        "report",
        "the report's: train on folds 0-3, validate on fold 4, each face once",
        cross_validation=False,
        keep_duplicates=False,
        counting="each face once (17,492 unique gender-labelled faces on the official files)",
    ),
    "levi": Protocol(
        "levi",
        "Levi & Hassner's: 5-fold cross-validation on their per-fold lists (duplicate lines kept)",
        cross_validation=True,
        keep_duplicates=True,
        counting="every labelled fold line, duplicates kept (17,603 rows on the official files)",
        references={LEVI_HASSNER_CAFFE.name: LEVI_HASSNER_2015},
    ),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        hint = did_you_mean(name, PROTOCOLS)
        raise SpecError(f"unknown protocol {name!r}{hint}; valid: {', '.join(PROTOCOLS)}") from None
