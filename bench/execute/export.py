"""After the trials: each report row's best model exported (``--save-models``), and the
checkpoints of finished trials removed.

A saved model is the trial's inference path, from cached uint8 images to class
probabilities (the centre crop, the normalisation, the network; the autoencoder without its
decoder), written twice under ``<run>/models/``:

- ``<row>.keras``: Keras's own layers (data.transforms.inference_layers: the same values as
  the trial's Preprocessing at inference), so plain ``keras.saving.load_model`` opens it; a
  network with a layer of this project (Levi & Hassner's LRN) needs ``import models.layers``
  first, which registers it.
- ``<row>.savedmodel/``: a TensorFlow SavedModel (``model.export``, on TensorFlow or, through
  jax2tf, JAX) whose ``serve`` endpoint ``tf.saved_model.load`` runs without this project or
  Keras. Where it cannot be written (no TensorFlow, a backend that cannot export), one
  warning line says why and the ``.keras`` file stands alone.

Checkpoints exist to continue a trial that did not finish; once it has, nothing needs them,
and a backbone's weigh hundreds of MB. No ray here: results and checkpoints are Ray Tune's,
read through their attributes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from pathlib import Path

import keras

from bench.specs import TrialSpec
from bench.trial.checkpoints import load_checkpoint
from bench.trial.fit import build_trial_model, load_trial_data
from data.cache import FaceCache
from data.transforms import inference_layers
from models.autoencoder import CLASSIFIER_LAYER, inference_model

MODELS_DIR = "models"
SAVED_MODEL_SUFFIX = ".savedmodel"


def saved_model_path(path: Path) -> Path:
    """The SavedModel folder written beside the ``.keras`` file ``path``."""
    return path.with_suffix(SAVED_MODEL_SUFFIX)


def export_model(spec: TrialSpec, cache: FaceCache, checkpoint: Path, path: Path) -> list[Path]:
    """The trial's model as its checkpoint holds it, saved for inference at ``path`` (``.keras``)
    and, beside it, as a SavedModel (saved_model_path); the paths written, the ``.keras`` first."""
    keras.backend.clear_session()
    data = load_trial_data(spec, cache)
    model, network = build_trial_model(spec, data.channel_stats, len(cache.class_names), image_size=cache.image_size)
    load_checkpoint(model, checkpoint)
    head = inference_model(network) if CLASSIFIER_LAYER in {layer.name for layer in network.layers} else network
    steps = inference_layers(model.get_layer("preprocessing"))
    if "resize_to_model" in {layer.name for layer in model.layers}:
        steps.append(model.get_layer("resize_to_model"))
    images = keras.Input(tuple(model.input.shape[1:]), dtype="uint8", name="cached_image")
    prepared = images
    # training=False recorded in every call: Keras's image layers (CenterCrop, Resizing) default
    # to training=True, which a call without it (serve, model(images)) passes to the layers after
    # them, Levi & Hassner's Dropout among them
    for layer in [*steps, head]:
        prepared = layer(prepared, training=False)
    exported = keras.Model(images, prepared, name=f"{network.name}_inference")
    path.parent.mkdir(parents=True, exist_ok=True)
    exported.save(path)
    written = [path]
    folder = saved_model_path(path)
    try:
        exported.export(folder, format="tf_saved_model", verbose=False)
    except Exception as error:  # the .keras file is written: the run goes on
        reason = " ".join(str(error).split())[:200]
        print(f"warning: no SavedModel for {path.stem} ({type(error).__name__}: {reason}); {path.name} only")
    else:
        written.append(folder)
    return written


def _best(result, metric: str = "val_accuracy"):
    """A result's best checkpoint by ``metric``, higher is better (Tune keeps it beside the latest)."""
    scored = [(metrics.get(metric, -math.inf), checkpoint) for checkpoint, metrics in result.best_checkpoints]
    scored = [(score, checkpoint) for score, checkpoint in scored if score == score]  # NaN never wins
    return max(scored, key=lambda pair: pair[0], default=(None, result.checkpoint))


def save_best_models(
    results: Iterable, cache: FaceCache, folder: Path, resolve, metric: str = "val_accuracy"
) -> list[Path]:
    """Per report row, its trial with the highest ``metric`` at its best checkpoint, exported
    (export_model) to ``folder/models/<row>.keras`` and ``<row>.savedmodel``: the paths written."""
    rows: dict[str, tuple[float, object, TrialSpec]] = {}
    for result in results:
        spec = resolve(result.config)
        score, checkpoint = _best(result, metric)
        if checkpoint is not None and score is not None and score > rows.get(spec.group_name, (-math.inf,))[0]:
            rows[spec.group_name] = (score, checkpoint, spec)
    saved = []
    for row, (_score, checkpoint, spec) in rows.items():
        with checkpoint.as_directory() as directory:
            saved += export_model(spec, cache, Path(directory), folder / MODELS_DIR / f"{row}.keras")
    return saved


def drop_finished_checkpoints(results: Iterable) -> None:
    """Remove the checkpoints of trials that ended (finished, stopped or failed for good)."""
    for result in results:
        checkpoints = [checkpoint for checkpoint, _ in result.best_checkpoints or []]
        for checkpoint in {id(c): c for c in [*checkpoints, result.checkpoint] if c is not None}.values():
            with contextlib.suppress(OSError, FileNotFoundError):
                checkpoint.filesystem.delete_dir(checkpoint.path)
