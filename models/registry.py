"""Model registry: builders registered by name, created with options, listed by pattern.

Modelled on timm: ``@register_model`` on a builder, ``create_model(name, **options)``
and ``list_models("mobilenet*")``. Every builder returns an uncompiled ``keras.Model``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import keras


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists close matches."""


class ModelOptionError(ValueError):
    """Raised for options a builder cannot honour, before anything is built."""


ModelBuilder = Callable[..., keras.Model]


def is_integer(value) -> bool:
    """An integer, numpy's included (search spaces give those), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    builder: ModelBuilder
    default_input_size: int
    description: str
    # the data layer's normalisation the model expects (models never normalise twice):
    # "per_image", "minus_one_to_one" (ResNet50V2's preprocess_input) or "none" (raw [0, 255])
    normalisation: str = "per_image"


_REGISTRY: dict[str, RegisteredModel] = {}
# name prefix -> (resolver: full name -> entry or None, lister: every name it resolves)
_RESOLVERS: dict[str, tuple[Callable[[str], RegisteredModel | None], Callable[[], list[str]]]] = {}
_RESOLVED: dict[str, RegisteredModel] = {}


def register_resolver(
    prefix: str, resolve: Callable[[str], RegisteredModel | None], names: Callable[[], list[str]]
) -> None:
    """Models named ``<prefix><anything>`` made on demand (``keras:ConvNeXtTiny``), rather than registered one by one."""
    _RESOLVERS[prefix] = (resolve, names)


def register_model(name: str, *, default_input_size: int, description: str = "", normalisation: str = "per_image"):
    """Decorator registering ``builder`` under ``name``; a name can be registered once."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = RegisteredModel(
            name=name,
            builder=builder,
            default_input_size=default_input_size,
            description=description or next(iter((builder.__doc__ or "").strip().splitlines()), name),
            normalisation=normalisation,
        )
        return builder

    return decorate


def get_model_entry(name: str) -> RegisteredModel:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _RESOLVED:
        return _RESOLVED[name]
    for prefix, (resolve, names) in _RESOLVERS.items():
        if name.startswith(prefix):
            entry = resolve(name)
            if entry is not None:
                _RESOLVED[name] = entry
                return entry
            close = difflib.get_close_matches(name, names(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownModelError(f"unknown model {name!r}{hint} (python -m models --all lists them)")
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}{hint} (known: {known})") from None


def is_registered(name: str) -> bool:
    """Registered, or made on demand by a resolver (``keras:<Name>``)."""
    if name in _REGISTRY or name in _RESOLVED:
        return True
    try:
        get_model_entry(name)
    except UnknownModelError:
        return False
    return True


def create_model(name: str, **options) -> keras.Model:
    """Build the registered model ``name`` with ``options``; returns an uncompiled model.

    Option names are checked against the builder's signature before anything is built (a
    builder that takes ``**options`` checks them itself, through ``build_variant``).
    """
    builder = get_model_entry(name).builder
    parameters = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        _refuse_unknown_options(name, options, parameters)
    return builder(**options)


def _refuse_unknown_options(model_name: str, options: Iterable[str], accepted: Iterable[str]) -> None:
    """A ModelOptionError naming the ``options`` that are not ``accepted``, before anything is built."""
    accepted = list(accepted)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ModelOptionError(
            f"{model_name}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(options: {', '.join(accepted)})"
        )


def build_variant(build: ModelBuilder, variant: str, options: dict, /, **fixed) -> keras.Model:
    """``build(**options, **fixed)`` for the registered model ``variant``, whose thin builder fixes
    some of ``build``'s arguments: a user's option that ``build`` does not take, or that the
    variant fixes, is refused before anything is built."""
    accepted = [name for name in inspect.signature(build).parameters if name not in fixed]
    _refuse_unknown_options(variant, options, accepted)
    return build(**options, **fixed)


def import_model_modules(names: Sequence[str]) -> None:
    """Import each user module whose ``register_model`` calls add models (``--model-module``).

    Importing twice is harmless: Python runs a module once per process.
    """
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # a missing module, or one that fails on import
            raise ModelOptionError(
                f"--model-module {name}: cannot import it ({type(error).__name__}: {error})"
            ) from None


def list_models(pattern: str = "*", *, resolvable: bool = False) -> list[str]:
    """Registered model names matching the shell-style ``pattern``, sorted; with ``resolvable``,
    also every name a resolver makes on demand (every ``keras:<Name>``)."""
    names = set(_REGISTRY)
    if resolvable:
        names |= {name for _, lister in _RESOLVERS.values() for name in lister()}
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
