"""Transfer models (report section 3.3): a keras.applications backbone without its top,
global average pooling, an optional ``Dense(latent_size)``, dropout and a 2-way softmax head.

The backbones come from ``keras.applications``, never copied. Each builder takes an
already-normalised batch, normalised once and per backbone:

- MobileNetV3Large and EfficientNetV2M rescale inside (``include_preprocessing=True``): feed
  raw [0, 255] values (the data layer's ``"none"`` normalisation).
- ResNet50V2 has no rescaling inside: feed its ``preprocess_input`` range [-1, 1] (the data
  layer's ``"minus_one_to_one"``).

``frozen``: ``"all"`` freezes the whole backbone, an integer N the backbone's first N layers
(``backbone.layers[:N]``, input layer included, as in Keras's fine-tuning guide), 0 (the
default) nothing. Frozen BatchNormalization layers run in inference mode (Keras 3 semantics).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
from keras import layers

from models.layers import softmax_classifier
from models.registry import (
    ModelOptionError,
    RegisteredModel,
    build_variant,
    is_integer,
    register_model,
    register_resolver,
)
from models.weights import (
    IMAGENET,
    check_weights_option,
    imagenet_unavailable,
    is_backbone_file,
    keras_cache_folder,
    load_whole_model_weights,
    one_line,
)

FROZEN_ALL = "all"
MIN_INPUT_SIZE = 32  # keras.applications refuses smaller inputs for all three backbones
# The report feeds every model the 227x227 crops of its pipeline (section 3.1); global
# pooling makes the backbones indifferent to the size, so 227 is every default here.
REPORT_INPUT_SIZE = 227


# keras.applications module -> what its preprocess_input does, as a data-layer normalisation:
# the one place a backbone's normalisation is declared. Families with an
# ``include_preprocessing`` argument rescale inside the model when it is True.
FAMILY_NORMALISATION = {
    "convnext": "none",
    "efficientnet": "none",
    "efficientnet_v2": "none",
    "mobilenet_v3": "none",
    "densenet": "torch",
    "resnet": "caffe",
    "vgg16": "caffe",
    "vgg19": "caffe",
    "resnet_v2": "minus_one_to_one",
    "mobilenet": "minus_one_to_one",
    "mobilenet_v2": "minus_one_to_one",
    "inception_v3": "minus_one_to_one",
    "inception_resnet_v2": "minus_one_to_one",
    "xception": "minus_one_to_one",
    "nasnet": "minus_one_to_one",
}
KERAS_PREFIX = "keras:"


def _family(application) -> str:
    return getattr(application, "__module__", "").rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Backbone:
    """A keras.applications backbone and the facts needed before building it."""

    application: Callable[..., keras.Model]
    layer_count: int | None  # len(backbone.layers) with include_top=False (None: known once built)
    imagenet_file: str | None  # the no-top weights file keras.applications downloads (None: not named here)
    normalisation: str  # what the data layer must feed it
    application_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, application: Callable[..., keras.Model], layer_count: int | None = None, imagenet_file: str | None = None
    ) -> Backbone:
        """``application`` fed its family's normalisation, rescaling inside where it can."""
        rescales = "include_preprocessing" in inspect.signature(application).parameters
        options = {"include_preprocessing": True} if rescales else {}
        return cls(application, layer_count, imagenet_file, FAMILY_NORMALISATION[_family(application)], options)


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v3_large": Backbone.of(
        keras.applications.MobileNetV3Large, 187, "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"
    ),
    "resnet50_v2": Backbone.of(
        keras.applications.ResNet50V2, 190, "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "efficientnet_v2_m": Backbone.of(keras.applications.EfficientNetV2M, 740, "efficientnetv2-m_notop.h5"),
}
BACKBONE_LAYER = "backbone"


def check_frozen(model_name: str, frozen, layer_count: int) -> None:
    if frozen == FROZEN_ALL:
        return
    if not is_integer(frozen) or frozen < 0:
        raise ModelOptionError(f"{model_name}: frozen must be 'all' or an integer >= 0, got {frozen!r}")
    if frozen > layer_count:
        raise ModelOptionError(f"{model_name}: frozen={frozen} is more than the backbone's {layer_count} layers")


def freeze_backbone(backbone: keras.Model, frozen) -> None:
    """Set ``trainable`` on ``backbone`` for a ``frozen`` option (see the module docstring)."""
    check_frozen(backbone.name, frozen, len(backbone.layers))
    if frozen == FROZEN_ALL:
        backbone.trainable = False
        return
    backbone.trainable = True
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= frozen


def build_transfer_model(
    model_name: str,
    input_size: int = REPORT_INPUT_SIZE,
    weights: str | None = None,
    frozen: str | int = 0,
    latent_size: int | None = None,
    dropout: float = 0.2,
    num_classes: int = 2,
) -> keras.Model:
    """Backbone ``model_name`` (a key of ``BACKBONES``, or ``keras:<Application>``) + pooling + [latent]
    + dropout + head."""
    backbone_spec = backbone_for(model_name)
    if not is_integer(input_size) or input_size < MIN_INPUT_SIZE:
        raise ModelOptionError(f"{model_name}: input_size must be an integer >= {MIN_INPUT_SIZE}, got {input_size!r}")
    if backbone_spec.layer_count is not None:
        check_frozen(model_name, frozen, backbone_spec.layer_count)
    elif frozen != FROZEN_ALL and (not is_integer(frozen) or frozen < 0):
        check_frozen(model_name, frozen, 0)
    if latent_size is not None and (not is_integer(latent_size) or latent_size <= 0):
        raise ModelOptionError(f"{model_name}: latent_size must be None or an integer > 0, got {latent_size!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ModelOptionError(f"{model_name}: dropout must be in [0, 1), got {dropout!r}")
    if not is_integer(num_classes) or num_classes < 2:
        raise ModelOptionError(f"{model_name}: num_classes must be an integer >= 2, got {num_classes!r}")
    check_weights_option(model_name, weights, backbone=True)

    backbone = _build_backbone(model_name, backbone_spec, input_size, weights)
    freeze_backbone(backbone, frozen)
    image = keras.Input((input_size, input_size, 3), name="image")
    x = backbone(image)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if latent_size is not None:
        x = layers.Dense(latent_size, activation="relu", name="latent")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = softmax_classifier(x, num_classes, "predictions")
    # a Keras name must be a scope name: keras:ConvNeXtTiny -> keras_ConvNeXtTiny
    return load_whole_model_weights(keras.Model(image, outputs, name=model_name.replace(":", "_")), weights)


def _build_backbone(model_name: str, spec: Backbone, input_size: int, weights) -> keras.Model:
    if weights == IMAGENET:
        application_weights = IMAGENET
    elif is_backbone_file(weights):
        application_weights = str(weights)
    else:
        application_weights = None
    try:
        backbone = spec.application(
            include_top=False,
            weights=application_weights,
            input_shape=(input_size, input_size, 3),
            **spec.application_options,
        )
    except Exception as error:
        # keras.utils.get_file raises a bare Exception on a failed download; a cached
        # file means the failure was something else and is passed on unchanged.
        cached = spec.imagenet_file is not None and (keras_cache_folder() / spec.imagenet_file).is_file()
        if weights == IMAGENET and not cached:
            file_name = spec.imagenet_file or f"{spec.application.__name__}'s no-top weights file"
            raise imagenet_unavailable(model_name, file_name, error) from None
        if isinstance(error, ValueError) and "input" in str(error).lower():  # e.g. an input too small for it
            raise ModelOptionError(f"{model_name}: {one_line(error)}") from None
        if is_backbone_file(weights):
            raise ModelOptionError(f"{model_name}: backbone weights file {str(weights)!r}: {one_line(error)}") from None
        raise
    backbone.name = BACKBONE_LAYER
    return backbone


def _transfer(model_name: str, options: dict, **defaults) -> keras.Model:
    # the backbone's name is fixed; its other defaults a user may override
    return build_variant(build_transfer_model, model_name, {**defaults, **options}, model_name=model_name)


def _register(model_name: str, description: str):
    normalisation = BACKBONES[model_name].normalisation
    return register_model(
        model_name, default_input_size=REPORT_INPUT_SIZE, description=description, normalisation=normalisation
    )


# Report 3.3: MobileNetV3Large and ResNet50V2 have no latent layer; EfficientNetV2M's rows
# use latent size 128 (and the random search varies it).
@_register("mobilenet_v3_large", "MobileNetV3Large transfer model")
def mobilenet_v3_large(**options) -> keras.Model:
    """MobileNetV3Large transfer model, no latent layer (report 3.3)."""
    return _transfer("mobilenet_v3_large", options)


@_register("resnet50_v2", "ResNet50V2 transfer model")
def resnet50_v2(**options) -> keras.Model:
    """ResNet50V2 transfer model, no latent layer (report 3.3)."""
    return _transfer("resnet50_v2", options)


@_register("efficientnet_v2_m", "EfficientNetV2M transfer model, latent 128")
def efficientnet_v2_m(**options) -> keras.Model:
    """EfficientNetV2M transfer model with a 128-wide latent layer (report 3.3)."""
    return _transfer("efficientnet_v2_m", options, latent_size=128)


def keras_applications() -> list[str]:
    """Every keras.applications model this harness can wrap, by its ``keras:<Name>`` model name."""
    return sorted(
        KERAS_PREFIX + name
        for name in dir(keras.applications)
        if name[:1].isupper() and _family(getattr(keras.applications, name)) in FAMILY_NORMALISATION
    )


def backbone_for(model_name: str) -> Backbone:
    """The report's backbones by name, or any keras.applications model as ``keras:<Name>``."""
    if model_name in BACKBONES:
        return BACKBONES[model_name]
    application = getattr(keras.applications, model_name.removeprefix(KERAS_PREFIX), None)
    if not model_name.startswith(KERAS_PREFIX) or _family(application) not in FAMILY_NORMALISATION:
        raise ModelOptionError(f"{model_name}: not a keras.applications model (see python -m models --all)")
    return Backbone.of(application)


def resolve_keras_application(model_name: str):
    """The registry entry of ``keras:<Name>``, or None when keras.applications has no such model."""
    try:
        backbone = backbone_for(model_name)
    except ModelOptionError:
        return None
    name = backbone.application.__name__

    def builder(**options) -> keras.Model:
        return _transfer(model_name, options)

    builder.__doc__ = (
        f"{name} from keras.applications with a latent head; feed it {backbone.normalisation!r}-normalised images."
    )
    return RegisteredModel(
        model_name, builder, REPORT_INPUT_SIZE, f"{name} (keras.applications)", backbone.normalisation
    )


register_resolver(KERAS_PREFIX, resolve_keras_application, keras_applications)
