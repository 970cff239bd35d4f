"""The ``weights`` option every builder takes: checked before building, loaded after.

``None``: random initialisation. ``"imagenet"`` (transfer models only): Keras's own download
and cache (``keras.applications``); offline, a one-line ``WeightsUnavailableError`` names the
file and the folder Keras looks in. A path: ``.weights.h5`` or ``.keras`` holds the weights of
the whole model as ``model.save_weights`` / ``model.save`` wrote them; a plain ``.h5`` (transfer
models only) is a backbone file in keras.applications' format, such as the ImageNet file
copied from a machine that could download it.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import keras

from models.registry import ModelOptionError

IMAGENET = "imagenet"
WHOLE_MODEL_SUFFIXES = (".weights.h5", ".keras")
BACKBONE_SUFFIX = ".h5"


class WeightsUnavailableError(ModelOptionError):
    """ImageNet weights were asked for but Keras could neither find nor download them."""


def keras_cache_folder() -> Path:
    """The folder ``keras.utils.get_file`` keeps downloaded application weights in.

    Same rule as Keras (``$KERAS_HOME`` or ``~/.keras``, ``/tmp/.keras`` when not writable),
    repeated here because Keras keeps its accessor private.
    """
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK) and os.path.isdir("/tmp"):
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "models"


def is_backbone_file(weights: str | os.PathLike | None) -> bool:
    return weights not in (None, IMAGENET) and not _is_whole_model_file(weights)


def _is_whole_model_file(weights) -> bool:
    return str(weights).endswith(WHOLE_MODEL_SUFFIXES)


def check_weights_option(model_name: str, weights, *, backbone: bool) -> None:
    """Refuse a ``weights`` value the builder of ``model_name`` cannot load (nothing is built).

    ``backbone``: whether the model has a keras.applications backbone, which alone can take
    ``"imagenet"`` or a backbone ``.h5`` file.
    """
    if weights is None:
        return
    if weights == IMAGENET:
        if not backbone:
            raise ModelOptionError(f"{model_name}: no ImageNet weights exist for it; use weights=None or a local file")
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ModelOptionError(f"{model_name}: weights must be None, 'imagenet' or a file path, got {weights!r}")
    path = Path(weights)
    suffixes = WHOLE_MODEL_SUFFIXES + ((BACKBONE_SUFFIX,) if backbone else ())
    if not str(path).endswith(suffixes):
        raise ModelOptionError(f"{model_name}: weights file must end in {', '.join(suffixes)}, got {str(path)!r}")
    if not path.is_file():
        raise ModelOptionError(f"{model_name}: weights file {str(path)!r} does not exist")


def load_whole_model_weights(model: keras.Model, weights) -> keras.Model:
    """Load a ``.weights.h5`` / ``.keras`` file into ``model`` when ``weights`` names one."""
    if weights is None or weights == IMAGENET or not _is_whole_model_file(weights):
        return model
    # A file of another model makes Keras warn once per nested layer before it raises;
    # the one-line error says it all, so those warnings are shown only after a success.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(weights))
        except ValueError as error:
            raise ModelOptionError(
                f"{model.name}: weights file {str(weights)!r} does not fit this model: {one_line(error)}"
            ) from None
        except (OSError, zipfile.BadZipFile) as error:  # not HDF5 / not a .keras zip: damaged or another format
            raise ModelOptionError(
                f"{model.name}: weights file {str(weights)!r} is not a readable Keras weights file: {one_line(error)}"
            ) from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def one_line(error: BaseException, limit: int = 240) -> str:
    """``error``'s message on one line, shortened to ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def imagenet_unavailable(model_name: str, file_name: str, reason: BaseException) -> WeightsUnavailableError:
    """The one-line error for ImageNet weights that could not be had."""
    why = one_line(reason, limit=160)
    folder = keras_cache_folder()
    return WeightsUnavailableError(
        f"{model_name}: ImageNet weights file {file_name} is not in {folder}/ and could not be downloaded "
        f"({why}); put {file_name} in {folder}/ or pass weights=<path to a .weights.h5, .keras or .h5 file>"
    )
