"""Model registry: builders registered by name, created with options, listed by pattern.

Modelled on timm: ``@register_model`` on a builder, ``create_model(name, **options)``
and ``list_models("mobilenet*")``. Every builder returns an uncompiled ``keras.Model``.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import keras


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists close matches."""


class ModelOptionError(ValueError):
    """Raised for options a builder cannot honour, before anything is built."""


ModelBuilder = Callable[..., keras.Model]


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    builder: ModelBuilder
    default_input_size: int
    description: str


_REGISTRY: dict[str, RegisteredModel] = {}


def register_model(name: str, *, default_input_size: int, description: str = ""):
    """Decorator registering ``builder`` under ``name``; a name can be registered once."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = RegisteredModel(
            name=name,
            builder=builder,
            default_input_size=default_input_size,
            description=description or (builder.__doc__ or "").strip().splitlines()[0],
        )
        return builder

    return decorate


def get_model_entry(name: str) -> RegisteredModel:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}{hint} (known: {known})") from None


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def create_model(name: str, **options) -> keras.Model:
    """Build the registered model ``name`` with ``options``; returns an uncompiled model."""
    return get_model_entry(name).builder(**options)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))
