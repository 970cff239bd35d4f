"""Model zoo: a registry of builders, each returning an uncompiled ``keras.Model``.

Importing the package registers every built-in model.
"""

from models import levi_hassner, tiny  # noqa: F401  (registers their builders)
from models.registry import (
    ModelOptionError,
    UnknownModelError,
    create_model,
    get_model_entry,
    is_registered,
    list_models,
    register_model,
)

__all__ = [
    "ModelOptionError",
    "UnknownModelError",
    "create_model",
    "get_model_entry",
    "is_registered",
    "list_models",
    "register_model",
]
