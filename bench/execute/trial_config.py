"""The config Ray Tune carries for each trial, its shape declared here only: runner.py writes it
(the ``param_space``) and reads it in the trial and its callbacks; records.py reads it back from
the result grid. No ray here.

The shape: ``{"spec": TrialSpec.to_dict(), "search": {"learning_rate": ..., "latent_size": ...}}``,
``search`` only in a random search and each draw only where the search varies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bench.specs import TrialSpec, apply_sample

_SPEC = "spec"
_SEARCH = "search"


@dataclass(frozen=True)
class TrialConfig:
    """A trial's spec (as a dict) and the random search's draws for it (None: not drawn).

    In the ``param_space`` the same fields hold Tune's grid search over the spec dicts and
    its samplers.
    """

    spec: Any
    learning_rate: Any = None
    latent_size: Any = None

    def to_dict(self) -> dict:
        drawn = {name: getattr(self, name) for name in _drawn_fields() if getattr(self, name) is not None}
        return {_SPEC: self.spec, _SEARCH: drawn} if drawn else {_SPEC: self.spec}

    @classmethod
    def from_dict(cls, config: Mapping) -> TrialConfig:
        drawn = config.get(_SEARCH) or {}
        return cls(config[_SPEC], **{name: drawn.get(name) for name in _drawn_fields()})


def _drawn_fields() -> list[str]:
    return [field.name for field in fields(TrialConfig)[1:]]  # every field after the spec


def template_name(config: Mapping) -> str:
    """The name of the trial's spec as planned (a random-search sample's before its draws)."""
    return TrialConfig.from_dict(config).spec["name"]


def resolve_spec(config: Mapping) -> TrialSpec:
    """The concrete spec of a trial: its template plus Ray Tune's random-search draws."""
    config = TrialConfig.from_dict(config)
    return apply_sample(TrialSpec.from_dict(config.spec), config.learning_rate, config.latent_size)
