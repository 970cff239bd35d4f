"""Transfer models: head layout, frozen layers, option checks, and weights (local files,
ImageNet offline). Built at 32x32, the smallest input keras.applications accepts."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import models
from models.transfer import BACKBONE_LAYER, BACKBONES, freeze_backbone
from models.weights import keras_cache_folder
from tests.model_zoo import default_model, trainable_parameters

pytestmark = pytest.mark.backends

SMALL = 32


@pytest.fixture(scope="module")
def mobilenet():
    return models.create_model("mobilenet_v3_large", input_size=SMALL)


def _same_weights(first: keras.Model, second: keras.Model) -> bool:
    return len(first.weights) == len(second.weights) and all(
        np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True)
    )


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_layer_counts_match_keras_applications(name):
    # the counts let ``frozen`` be checked before anything is built; EfficientNetV2M's comes
    # from the session's one default-size build
    model = default_model(name) if name == "efficientnet_v2_m" else models.create_model(name, input_size=SMALL)
    assert len(model.get_layer(BACKBONE_LAYER).layers) == BACKBONES[name].layer_count


def test_head_is_pooling_optional_latent_dropout_and_softmax():
    plain = models.create_model("resnet50_v2", input_size=SMALL, dropout=0.3)
    assert [layer.name for layer in plain.layers] == [
        "image",
        BACKBONE_LAYER,
        "avg_pool",
        "head_dropout",
        "predictions",  # logits
        "predictions_softmax",  # their softmax, float32 under a mixed policy
    ]
    assert plain.get_layer("head_dropout").rate == 0.3
    latent = models.create_model("resnet50_v2", input_size=SMALL, latent_size=64)
    assert latent.get_layer("latent").units == 64
    assert latent.count_params() - plain.count_params() == (2048 * 64 + 64) + (64 * 2 + 2) - (2048 * 2 + 2)


def test_backbones_rescale_inside_where_keras_does(mobilenet):
    rescaling = [
        layer for layer in mobilenet.get_layer(BACKBONE_LAYER).layers if isinstance(layer, keras.layers.Rescaling)
    ]
    assert len(rescaling) == 1  # MobileNetV3Large takes raw [0, 255] values
    resnet = models.create_model("resnet50_v2", input_size=SMALL)
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in resnet.get_layer(BACKBONE_LAYER).layers)
    assert (BACKBONES["mobilenet_v3_large"].normalisation, BACKBONES["resnet50_v2"].normalisation) == (
        "none",
        "minus_one_to_one",
    )


def test_frozen_all_trains_only_the_head():
    model = models.create_model("mobilenet_v3_large", input_size=SMALL, frozen="all", latent_size=16)
    assert not model.get_layer(BACKBONE_LAYER).trainable
    assert trainable_parameters(model) == (960 * 16 + 16) + (16 * 2 + 2)


@pytest.mark.parametrize("frozen", [10, 20])
def test_frozen_n_freezes_the_first_n_backbone_layers(frozen):
    model = models.create_model("mobilenet_v3_large", input_size=SMALL, frozen=frozen)
    backbone = model.get_layer(BACKBONE_LAYER)
    assert [layer.trainable for layer in backbone.layers] == [False] * frozen + [True] * (len(backbone.layers) - frozen)
    frozen_weights = sum(math.prod(w.shape) for layer in backbone.layers[:frozen] for w in layer.trainable_weights)
    assert frozen_weights == 0
    assert trainable_parameters(model) < trainable_parameters(
        models.create_model("mobilenet_v3_large", input_size=SMALL)
    )


def test_freeze_backbone_gives_what_the_builder_gives(mobilenet):
    backbone = mobilenet.get_layer(BACKBONE_LAYER)
    try:
        for frozen in ("all", 20, 0):
            freeze_backbone(backbone, frozen)
            built = models.create_model("mobilenet_v3_large", input_size=SMALL, frozen=frozen)
            assert trainable_parameters(mobilenet) == trainable_parameters(built), frozen
    finally:
        freeze_backbone(backbone, 0)


def test_frozen_batch_normalisation_keeps_its_statistics_while_training():
    model = models.create_model("mobilenet_v3_large", input_size=SMALL, frozen="all")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = model.get_layer(BACKBONE_LAYER).get_weights()
    images = np.random.default_rng(1).uniform(0, 255, size=(8, SMALL, SMALL, 3)).astype("float32")
    model.fit(images, np.arange(8) % 2, epochs=1, batch_size=8, verbose=0)
    after = model.get_layer(BACKBONE_LAYER).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("efficientnet_v2_m", {"frozen": 741}, "frozen=741 is more than the backbone's 740 layers"),
        ("mobilenet_v3_large", {"frozen": 188}, "more than the backbone's 187 layers"),
        ("resnet50_v2", {"frozen": -1}, "frozen must be 'all' or an integer >= 0"),
        ("resnet50_v2", {"frozen": True}, "frozen must be 'all' or an integer >= 0"),
        ("resnet50_v2", {"frozen": "most"}, "frozen must be 'all' or an integer >= 0"),
        ("efficientnet_v2_m", {"latent_size": 0}, "latent_size must be None or an integer > 0"),
        ("mobilenet_v3_large", {"latent_size": -5}, "latent_size must be None or an integer > 0"),
        ("efficientnet_v2_m", {"input_size": 31}, "input_size must be an integer >= 32"),
        ("resnet50_v2", {"input_size": 16}, "input_size must be an integer >= 32"),
        ("mobilenet_v3_large", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("mobilenet_v3_large", {"weights": "weights.txt"}, "weights file must end in"),
        ("mobilenet_v3_large", {"weights": "/nowhere/model.weights.h5"}, "does not exist"),
        ("mobilenet_v3_large", {"pointwise_channels": 8}, "unknown option pointwise_channels"),
        ("levi_hassner", {"weights": "imagenet"}, "no ImageNet weights exist for it"),
    ],
)
def test_invalid_options_are_refused_in_one_line_before_building(name, options, message):
    tensors_before = keras.backend.get_uid("keras_tensor")
    with pytest.raises(models.ModelOptionError, match=message) as error:
        models.create_model(name, **options)
    assert len(str(error.value).splitlines()) == 1 and str(error.value).startswith(name)
    # building any layer graph names new KerasTensors; none named (the probe's own uid only): nothing built
    assert keras.backend.get_uid("keras_tensor") == tensors_before + 1


def test_unknown_model_lists_close_matches():
    with pytest.raises(models.UnknownModelError, match="did you mean.*mobilenet_v3_large"):
        models.create_model("mobilenet_v3")


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_local_weights_file_loads_bit_equal(tmp_path, mobilenet, suffix):
    path = tmp_path / f"mobilenet{suffix}"
    if suffix == ".keras":
        mobilenet.save(path)
    else:
        mobilenet.save_weights(path)
    loaded = models.create_model("mobilenet_v3_large", input_size=SMALL, weights=str(path))
    assert _same_weights(mobilenet, loaded)
    fresh = models.create_model("mobilenet_v3_large", input_size=SMALL)
    assert not _same_weights(mobilenet, fresh)  # the check above can fail


def test_backbone_h5_file_loads_like_keras_applications_does(tmp_path, mobilenet):
    # the ImageNet file Keras downloads is a backbone-only .h5: a saved backbone stands in for it
    path = tmp_path / "mobilenet_backbone.h5"
    mobilenet.get_layer(BACKBONE_LAYER).save(path)
    loaded = models.create_model("mobilenet_v3_large", input_size=SMALL, weights=str(path))
    assert _same_weights(mobilenet.get_layer(BACKBONE_LAYER), loaded.get_layer(BACKBONE_LAYER))


def test_weights_of_another_model_are_refused_in_one_line(tmp_path, mobilenet):
    path = tmp_path / "mobilenet.weights.h5"
    mobilenet.save_weights(path)
    with pytest.raises(models.ModelOptionError, match="does not fit this model") as error:
        models.create_model("resnet50_v2", input_size=SMALL, weights=str(path))
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square:UserWarning")  # expected at 32x32
@pytest.mark.parametrize("name", ["mobilenet_v3_large", "resnet50_v2"])
def test_imagenet_weights_offline_name_the_file_and_the_folder(monkeypatch, name):
    expected = keras_cache_folder() / BACKBONES[name].imagenet_file
    if expected.is_file():
        pytest.skip(f"{expected} is cached, so Keras would not try to download it")
    # a proxy that refuses connections: the download fails at once, network or not
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(models.WeightsUnavailableError) as error:
        models.create_model(name, input_size=SMALL, weights="imagenet")
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert BACKBONES[name].imagenet_file in message and str(keras_cache_folder()) in message
    assert isinstance(error.value, ValueError) and error.value.__suppress_context__
    # Keras's own error names the URL it tried: the file name in our table is the one it wants
    assert BACKBONES[name].imagenet_file in str(error.value.__context__)


def test_registry_says_which_normalisation_each_model_expects():
    expected = {"mobilenet_v3_large": "none", "efficientnet_v2_m": "none", "resnet50_v2": "minus_one_to_one"}
    for name in models.list_models():
        assert models.get_model_entry(name).normalisation == expected.get(name, "per_image"), name
