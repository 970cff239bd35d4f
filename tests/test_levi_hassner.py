import numpy as np
import pytest
from keras.ops import convert_to_numpy

import models
from models.layers import LocalResponseNormalization

pytestmark = pytest.mark.backends

EXPECTED_SHAPES = {
    "conv1": (56, 56, 96),
    "pool1": (27, 27, 96),
    "norm1": (27, 27, 96),
    "pad2": (31, 31, 96),
    "conv2": (27, 27, 256),
    "pool2": (13, 13, 256),
    "norm2": (13, 13, 256),
    "pad3": (15, 15, 256),
    "conv3": (13, 13, 384),
    "pool3": (6, 6, 384),
    "norm3": (6, 6, 384),
    "flat1": (13824,),
    "fc1": (512,),
    "do1": (512,),
    "fc2": (512,),
    "do2": (512,),
    "fc3": (2,),  # logits
    "fc3_softmax": (2,),  # their softmax, float32 under a mixed policy
}
EXPECTED_PARAMS = {"conv1": 14208, "conv2": 614656, "conv3": 885120, "fc1": 7078400, "fc2": 262656, "fc3": 1026}


@pytest.fixture(scope="module")
def levi_hassner():
    return models.create_model("levi_hassner")


def test_parameter_count_matches_the_report(levi_hassner):
    assert levi_hassner.count_params() == 8_856_066
    for name, count in EXPECTED_PARAMS.items():
        assert levi_hassner.get_layer(name).count_params() == count, name


def test_layer_output_shapes_match_the_report(levi_hassner):
    assert tuple(levi_hassner.input.shape) == (None, 227, 227, 3)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in levi_hassner.layers[1:]}
    assert shapes == EXPECTED_SHAPES


def test_forward_pass_gives_class_probabilities(levi_hassner):
    images = np.random.default_rng(0).normal(size=(2, 227, 227, 3)).astype("float32")
    probabilities = convert_to_numpy(levi_hassner(images, training=False))
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 13, 13, 96), (3, 6, 6, 384), (1, 4, 4, 7)])
def test_lrn_equals_tensorflow_op(shape):
    tf = pytest.importorskip("tensorflow")  # the reference op, on any Keras backend
    rng = np.random.default_rng(sum(shape))
    activations = np.maximum(rng.normal(0, 3, size=shape), 0).astype("float32")  # post-ReLU values
    ours = convert_to_numpy(LocalResponseNormalization(size=5, alpha=1e-4, beta=0.75, bias=1.0)(activations))
    theirs = tf.nn.local_response_normalization(activations, depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-6, rtol=1e-6)


def test_lrn_actually_normalises_large_activations():
    activations = np.full((1, 1, 1, 5), 1000.0, dtype="float32")
    out = convert_to_numpy(LocalResponseNormalization()(activations))
    assert (out < 1000.0 * 0.5).all()


def test_lrn_rejects_even_size():
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNormalization(size=4)


def test_caffe_variant_drops_the_third_lrn():
    model = models.create_model("levi_hassner", lrn_after_conv3=False)
    assert "norm3" not in [layer.name for layer in model.layers]
    assert model.count_params() == 8_856_066


def test_bad_input_size_is_refused_before_building():
    with pytest.raises(models.ModelOptionError, match="input_size"):
        models.create_model("levi_hassner", input_size=32)


def test_registry_lists_and_suggests():
    assert "levi_hassner" in models.list_models()
    assert models.list_models("levi*") == [name for name in models.list_models() if name.startswith("levi")]
    with pytest.raises(models.UnknownModelError, match="did you mean levi_hassner"):
        models.create_model("levi_hasner")


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("levi_hassner", default_input_size=227)(lambda: None)


def test_nocrop_variant_takes_the_whole_256_image():
    model = models.create_model("levi_hassner_nocrop")
    assert tuple(model.input.shape) == (None, 256, 256, 3)
    assert tuple(model.get_layer("flat1").output.shape) == (None, 7 * 7 * 384)
    assert model.count_params() == 11_411_970  # the report's "~11M"
    assert model.get_layer("fc1").count_params() == 7 * 7 * 384 * 512 + 512


@pytest.mark.parametrize("channels", [16, 64])
def test_pointwise_variant_shrinks_the_feature_map_before_the_classifier(channels):
    model = models.create_model("levi_hassner_pointwise", pointwise_channels=channels)
    pointwise = model.get_layer("pointwise")
    assert pointwise.kernel_size == (1, 1) and pointwise.filters == channels
    assert tuple(model.get_layer("flat1").output.shape) == (None, 6 * 6 * channels)
    baseline_fc1 = 13_824 * 512 + 512
    expected = 8_856_066 - baseline_fc1 + (6 * 6 * channels * 512 + 512) + (384 * channels + channels)
    assert model.count_params() == expected


@pytest.mark.parametrize("channels", [0, -3, 2.5, True])
def test_pointwise_channels_must_be_a_positive_integer(channels):
    with pytest.raises(models.ModelOptionError, match="pointwise_channels must be an integer >= 1"):
        models.create_model("levi_hassner_pointwise", pointwise_channels=channels)


def test_smallest_input_is_the_smallest_that_leaves_a_feature_map():
    assert models.create_model("levi_hassner", input_size=63).get_layer("pool3").output.shape[1] == 1
    with pytest.raises(models.ModelOptionError, match="input_size must be an integer >= 63"):
        models.create_model("levi_hassner", input_size=62)


def test_local_weights_file_loads_bit_equal(tmp_path, levi_hassner):
    path = tmp_path / "levi_hassner.weights.h5"
    levi_hassner.save_weights(path)
    loaded = models.create_model("levi_hassner", weights=str(path))
    for saved, restored in zip(levi_hassner.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, restored)
    with pytest.raises(models.ModelOptionError, match="does not fit this model"):
        models.create_model("levi_hassner_nocrop", weights=str(path))
