"""--save-models: a trial's checkpoint exported as a .keras file that keras.saving.load_model opens."""

import keras
import numpy as np
import pytest

import data.transforms  # noqa: F401  (registers the preprocessing layers load_model needs)
from bench.execute.export import export_model
from bench.trial.checkpoints import TrialState, save_checkpoint
from bench.trial.fit import build_trial_model, load_trial_data
from models.autoencoder import CLASSIFIER_LAYER
from tests.conftest import tiny_spec

AUTOENCODER = {
    "model": "autoencoder",
    "model_options": {"latent_size": 16},
    "policy": "autoencoder-extra",
    "normalisation": "per_image",
}


@pytest.mark.parametrize("changes", [{}, AUTOENCODER], ids=["tiny_cnn", "autoencoder"])
def test_an_exported_model_predicts_what_the_trained_one_did(small_cache, tmp_path, changes):
    spec = tiny_spec("exported", **changes)
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    trial_data = load_trial_data(spec, small_cache)
    model, network = build_trial_model(spec, trial_data.channel_stats)
    images = small_cache.read(trial_data.val_slots[:4])
    model.train_on_batch(images.astype("float32"), trial_data.val_labels[:4])  # weights no initialiser gave
    expected = model.predict(images, verbose=0)
    save_checkpoint(model, TrialState(epoch=1), tmp_path / "checkpoint")
    network_params = network.count_params()

    path = export_model(spec, small_cache, tmp_path / "checkpoint", tmp_path / "models" / "exported.keras")
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    assert loaded.input.dtype == "uint8" and tuple(loaded.output.shape) == (None, 2)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-5)
    if changes:  # the classifier without its decoder
        assert loaded.count_params() < network_params
        nested = [layer for layer in loaded.layers if isinstance(layer, keras.Model)]
        names = {layer.name for model in (loaded, *nested) for layer in model.layers}
        assert "latent" in names and CLASSIFIER_LAYER in names and not {"decoder_dense", "reconstruction"} & names
