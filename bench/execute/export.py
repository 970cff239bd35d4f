"""After the trials: each report row's best model exported (``--save-models``), and the
checkpoints of finished trials removed.

A saved model is the trial's inference path, from cached uint8 images to class
probabilities (the centre crop, the normalisation, the network; the autoencoder without its
decoder), a ``.keras`` file that ``keras.saving.load_model`` opens once ``data.transforms``
is imported (its layers are registered there). Checkpoints exist to continue a trial that
did not finish; once it has, nothing needs them, and a backbone's weigh hundreds of MB.
No ray here: results and checkpoints are Ray Tune's, read through their attributes.
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
from models.autoencoder import CLASSIFIER_LAYER, inference_model

MODELS_DIR = "models"


def export_model(spec: TrialSpec, cache: FaceCache, checkpoint: Path, path: Path) -> Path:
    """The trial's model as its checkpoint holds it, saved for inference at ``path``."""
    keras.backend.clear_session()
    data = load_trial_data(spec, cache)
    model, network = build_trial_model(spec, data.channel_stats, len(cache.class_names), image_size=cache.image_size)
    load_checkpoint(model, checkpoint)
    head = inference_model(network) if CLASSIFIER_LAYER in {layer.name for layer in network.layers} else network
    images = keras.Input(tuple(model.input.shape[1:]), dtype="uint8", name="cached_image")
    prepared = model.get_layer("preprocessing")(images)
    if "resize_to_model" in {layer.name for layer in model.layers}:
        prepared = model.get_layer("resize_to_model")(prepared)
    exported = keras.Model(images, head(prepared), name=f"{network.name}_inference")
    path.parent.mkdir(parents=True, exist_ok=True)
    exported.save(path)
    return path


def _best(result):
    """A result's best checkpoint by val accuracy (Tune keeps it beside the latest)."""
    scored = [(metrics.get("val_accuracy", -math.inf), checkpoint) for checkpoint, metrics in result.best_checkpoints]
    scored = [(score, checkpoint) for score, checkpoint in scored if score == score]  # NaN never wins
    return max(scored, key=lambda pair: pair[0], default=(None, result.checkpoint))


def save_best_models(results: Iterable, cache: FaceCache, folder: Path, resolve) -> list[Path]:
    """One ``<row>.keras`` per report row: its trial with the highest val accuracy, at its best checkpoint."""
    rows: dict[str, tuple[float, object, TrialSpec]] = {}
    for result in results:
        spec = resolve(result.config)
        score, checkpoint = _best(result)
        if checkpoint is not None and score is not None and score > rows.get(spec.group_name, (-math.inf,))[0]:
            rows[spec.group_name] = (score, checkpoint, spec)
    saved = []
    for row, (_score, checkpoint, spec) in rows.items():
        with checkpoint.as_directory() as directory:
            saved.append(export_model(spec, cache, Path(directory), folder / MODELS_DIR / f"{row}.keras"))
    return saved


def drop_finished_checkpoints(results: Iterable) -> None:
    """Remove the checkpoints of trials that ended (finished, stopped or failed for good)."""
    for result in results:
        checkpoints = [checkpoint for checkpoint, _ in result.best_checkpoints or []]
        for checkpoint in {id(c): c for c in [*checkpoints, result.checkpoint] if c is not None}.values():
            with contextlib.suppress(OSError, FileNotFoundError):
                checkpoint.filesystem.delete_dir(checkpoint.path)
