"""Model zoo: a registry of builders, each returning an uncompiled ``keras.Model``.

Importing the package registers every built-in model: the report's Levi & Hassner CNN and
its no-crop and pointwise variants, the autoencoder classifier, the three
keras.applications transfer models, and a tiny CNN for checking the harness itself.
"""

from models import autoencoder, levi_hassner, tiny, transfer  # noqa: F401  (register their builders)
from models.registry import (
    ModelOptionError,
    UnknownModelError,
    create_model,
    get_model_entry,
    import_model_modules,
    is_registered,
    list_models,
    register_model,
)
from models.weights import WeightsUnavailableError

__all__ = [
    "ModelOptionError",
    "UnknownModelError",
    "WeightsUnavailableError",
    "create_model",
    "get_model_entry",
    "import_model_modules",
    "is_registered",
    "list_models",
    "register_model",
]
