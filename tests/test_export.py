"""--save-models: a trial's checkpoint exported as a .keras file that plain keras.saving.load_model
opens and a SavedModel that tf.saved_model.load serves, both predicting what the trial did."""

import os
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from bench.execute.export import SAVED_MODEL_SUFFIX, _best, export_model
from bench.trial.checkpoints import TrialState, save_checkpoint
from bench.trial.fit import build_trial_model, load_trial_data
from data.transforms import NORMALISATIONS, Preprocessing, inference_layers
from models.autoencoder import CLASSIFIER_LAYER
from tests.conftest import REPO_ROOT, tiny_spec

AUTOENCODER = {
    "model": "autoencoder",
    "model_options": {"latent_size": 16},
    "policy": "autoencoder-extra",
    "normalisation": "per_image",
}
# what the fresh processes export and serve: a crop with per-image standardisation; no crop,
# the caffe convolution and a resize to the model's side; Levi & Hassner's LRN (small input)
SERVED = {
    "tiny_cnn": {"policy": "report", "normalisation": "per_image"},
    "tiny_cnn_caffe": {"policy": "none", "normalisation": "caffe"},
    "levi_hassner": {"model": "levi_hassner", "model_options": {"input_size": 63}},
}
# A fresh process's start: the project's packages named in argv[1] cannot be imported there
# (the editable install would find them anywhere), and at its end none of them was.
CHILD = """
import atexit, importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} may not be imported in this test")
sys.meta_path.insert(0, NoProject())
atexit.register(lambda: print("imported:", sorted(BLOCKED & {m.partition(".")[0] for m in sys.modules})))
"""
# argv[2]: SavedModels to serve, argv[3]: .keras files to load plainly, on each one's images
SERVE = """
import keras, numpy as np, tensorflow as tf
for name in sys.argv[2].split(","):
    images = np.load(f"{name}.images.npy")
    served = tf.saved_model.load(f"models/{name}.savedmodel")  # held: serve needs its variables alive
    np.save(f"{name}.savedmodel.npy", served.serve(images).numpy())
for name in sys.argv[3].split(","):
    model = keras.saving.load_model(f"models/{name}.keras")
    np.save(f"{name}.keras.npy", np.asarray(model(np.load(f"{name}.images.npy"))))  # no training=False
"""
LOAD_LEVI_HASSNER = """
import keras, numpy as np
try:
    keras.saving.load_model("models/levi_hassner.keras")
except Exception as error:
    print("without models.layers:", " ".join(str(error).split()))
else:
    print("without models.layers: loaded")
import models.layers  # registers LocalResponseNormalization
model = keras.saving.load_model("models/levi_hassner.keras")
np.save("levi_hassner.keras.npy", np.asarray(model(np.load("levi_hassner.images.npy"))))  # its Dropout off
"""


def _trained_export(spec, cache, folder, images=4):
    """``spec`` trained one batch, checkpointed and exported under ``folder``: the export_model
    paths, the uint8 images and the trained model's predictions on them, its network."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    trial_data = load_trial_data(spec, cache)
    model, network = build_trial_model(spec, trial_data.channel_stats)
    batch = cache.read(trial_data.val_slots[:images])
    model.train_on_batch(batch.astype("float32"), trial_data.val_labels[:images])  # weights no initialiser gave
    expected = model.predict(batch, verbose=0)
    save_checkpoint(model, TrialState(epoch=1), folder / "checkpoint")
    paths = export_model(spec, cache, folder / "checkpoint", folder / "models" / f"{spec.name}.keras")
    return paths, batch, expected, network


def _run_fresh(script: str, folder, *args: str, pythonpath: str | None = None) -> str:
    """``CHILD + script`` in a fresh python on the TensorFlow backend, in ``folder``, PYTHONPATH
    ``pythonpath`` (default: none): its output, which ends with the blocked packages it imported."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(KERAS_BACKEND="tensorflow", **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    command = [sys.executable, "-c", CHILD + script, *args]
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("imported: []"), result.stdout
    return result.stdout


@pytest.mark.parametrize("normalisation", sorted(NORMALISATIONS))
@pytest.mark.parametrize(("side", "crop"), [(64, 56), (65, 56), (64, None)], ids=["even", "odd", "nocrop"])
def test_inference_layers_compute_what_the_preprocessing_does(normalisation, side, crop):
    rng = np.random.default_rng(side)
    images = rng.integers(0, 256, (3, side, side, 3), dtype="uint8")
    images[1] = 77  # a constant image
    images[2] = images[2] // 4 + 96  # low contrast
    statistics = {"channel_mean": [120.5, 101.25, 90.0], "channel_std": [60.1, 55.3, 50.7]}
    preprocessing = Preprocessing(
        {"name": "centre", "crop": crop}, normalisation, image_size=side, dtype="float32", **statistics
    )
    expected = np.asarray(preprocessing(images, training=False))
    layers = inference_layers(preprocessing)
    assert all(type(layer).__module__.startswith("keras.") for layer in layers)
    prepared = images
    for layer in layers:
        prepared = layer(prepared)
    assert prepared.dtype == "float32" and tuple(prepared.shape) == expected.shape
    if normalisation == "per_image":  # LayerNormalization: sqrt(variance + 1/N) for max(std, 1/sqrt(N))
        np.testing.assert_allclose(np.asarray(prepared), expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(np.asarray(prepared), expected)


@pytest.mark.parametrize("changes", [{}, AUTOENCODER], ids=["tiny_cnn", "autoencoder"])
def test_an_exported_model_predicts_what_the_trained_one_did(small_cache, tmp_path, changes):
    spec = tiny_spec("exported", **changes)
    (path, saved_model), images, expected, network = _trained_export(spec, small_cache, tmp_path)
    assert path == tmp_path / "models" / "exported.keras" and saved_model == path.with_suffix(SAVED_MODEL_SUFFIX)
    assert (saved_model / "saved_model.pb").is_file()
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    assert loaded.input.dtype == "uint8" and tuple(loaded.output.shape) == (None, 2)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-5)
    if changes:  # the classifier without its decoder
        assert loaded.count_params() < network.count_params()
        nested = [layer for layer in loaded.layers if isinstance(layer, keras.Model)]
        names = {layer.name for model in (loaded, *nested) for layer in model.layers}
        assert "latent" in names and CLASSIFIER_LAYER in names and not {"decoder_dense", "reconstruction"} & names


def test_without_tensorflow_the_keras_file_stands_alone(small_cache, tmp_path, monkeypatch, capsys):
    def no_tensorflow(self, *args, **kwargs):
        raise ModuleNotFoundError("No module named 'tensorflow'")

    monkeypatch.setattr(keras.Model, "export", no_tensorflow)
    paths, *_ = _trained_export(tiny_spec("alone"), small_cache, tmp_path)
    assert paths == [tmp_path / "models" / "alone.keras"] and paths[0].is_file()
    (warning,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert "No module named 'tensorflow'" in warning and warning.endswith("alone.keras only"), warning


def test_the_exported_checkpoint_is_the_best_by_the_ranking_metric():
    checkpoints = [("a", {"val_accuracy": 0.9, "val_f1": 0.5}), ("b", {"val_accuracy": 0.8, "val_f1": 0.7})]
    result = SimpleNamespace(best_checkpoints=[*checkpoints, ("nan", {"val_f1": float("nan")})], checkpoint="latest")
    assert _best(result) == (0.9, "a") and _best(result, "val_f1") == (0.7, "b")
    assert _best(SimpleNamespace(best_checkpoints=[], checkpoint="latest"), "val_f1") == (None, "latest")


@pytest.fixture(scope="module")
def served(small_cache, tmp_path_factory):
    """SERVED trained and exported, with the images and the trained models' predictions on them."""
    folder = tmp_path_factory.mktemp("served")
    exports = {}
    for name, changes in SERVED.items():
        paths, images, expected, _ = _trained_export(tiny_spec(name, **changes), small_cache, folder)
        exports[name] = paths
        np.save(folder / f"{name}.images.npy", images)
        np.save(folder / f"{name}.expected.npy", expected)
    return folder, exports


def test_both_exports_serve_in_a_process_without_the_project(served):
    folder, exports = served
    plain = [name for name in exports if name != "levi_hassner"]  # Keras's own layers only
    _run_fresh(SERVE, folder, "bench,data,models", ",".join(exports), ",".join(plain))
    for name in exports:
        expected = np.load(folder / f"{name}.expected.npy")
        for output in ["savedmodel", *(["keras"] if name in plain else [])]:
            got = np.load(folder / f"{name}.{output}.npy")
            assert got.shape == expected.shape, (name, output)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"{name} {output}")


def test_a_levi_hassner_export_loads_after_importing_models_layers(served):
    folder, _ = served
    output = _run_fresh(LOAD_LEVI_HASSNER, folder, "bench,data", pythonpath=str(REPO_ROOT))
    failure = output.partition("without models.layers: ")[2].splitlines()[0]
    assert "LocalResponseNormalization" in failure, failure
    np.testing.assert_allclose(
        np.load(folder / "levi_hassner.keras.npy"), np.load(folder / "levi_hassner.expected.npy"), rtol=1e-4, atol=1e-5
    )
