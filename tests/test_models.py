"""The model zoo's contract, one row per registered model: output shape, parameters at the
default input size, trainable parameters under each ``frozen`` option, forward FLOPs (pinned,
and within 3% of TensorFlow's profiler), and ``python -m models``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pytest

import models
from bench.trial.execution import dtype_policy
from bench.trial.flops import forward_flops
from models.autoencoder import CLASSIFIER_LAYER
from models.transfer import BACKBONE_LAYER, BACKBONES, MIN_INPUT_SIZE, freeze_backbone
from tests.model_zoo import default_model, trainable_parameters

pytestmark = pytest.mark.backends

REPORT_MODELS = {
    "levi_hassner",
    "levi_hassner_nocrop",
    "levi_hassner_pointwise",
    "autoencoder",
    "mobilenet_v3_large",
    "resnet50_v2",
    "efficientnet_v2_m",
}
FROZEN_OPTIONS = ("all", 10, 20, 0)
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Contract:
    input_size: int  # default input size
    shape_input: int | None  # the shape test's input: the smallest the builder accepts; None: the default model
    params: int  # at the default input size
    flops: int  # forward FLOPs per image at the default input size, bench.trial.flops's count
    trainable: dict = field(default_factory=dict)  # frozen option -> trainable parameters (transfer models)


CONTRACTS = {
    # the report's table: 8,856,066
    "levi_hassner": Contract(227, 63, 8_856_066, 1_301_423_052),
    # the report's "~11M"
    "levi_hassner_nocrop": Contract(256, 63, 11_411_970, 1_715_288_012),
    "levi_hassner_pointwise": Contract(227, 63, 2_982_466, 1_291_400_652),
    # the report's "~3 Million" at latent 128
    "autoencoder": Contract(256, 64, 3_304_965, 931_021_580),
    "mobilenet_v3_large": Contract(
        227, 32, 2_998_274, 511_326_810, {"all": 1_922, 10: 2_972_946, 20: 2_969_506, 0: 2_973_874}
    ),
    "resnet50_v2": Contract(
        227, 32, 23_568_898, 8_010_444_428, {"all": 4_098, 10: 23_509_634, 20: 23_422_466, 0: 23_523_458}
    ),
    # built once per session: the shape test reuses the default-size model
    "efficientnet_v2_m": Contract(
        227, None, 53_314_614, 12_544_007_386, {"all": 164_226, 10: 53_011_470, 20: 52_985_454, 0: 53_022_582}
    ),
}
CONTRACTS["tiny_cnn"] = Contract(227, 21, 5_922, 33_721_372)  # not in the report: the harness's own check

# Graph outputs the reference profile must keep besides the model's own: the autoencoder's
# decoder feeds only its training loss, which TensorFlow prunes from an inference graph.
REFERENCE_EXTRA_OUTPUTS = {"autoencoder": ("reconstruction",)}


def test_every_registered_model_has_a_contract_and_the_report_models_are_all_there():
    assert set(models.list_models()) == set(CONTRACTS)
    assert set(models.list_models()) >= REPORT_MODELS


@pytest.mark.parametrize("name", models.list_models())
def test_output_is_a_batch_of_two_class_probabilities(name):
    shape_input = CONTRACTS[name].shape_input
    model = default_model(name) if shape_input is None else models.create_model(name, input_size=shape_input)
    images = np.random.default_rng(0).normal(size=(3, *model.input.shape[1:])).astype("float32")
    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", [*models.list_models(), "keras:MobileNetV3Small"])
def test_under_mixed_bfloat16_the_softmax_computes_in_float32(name):
    # the smallest input each builder takes (EfficientNetV2M's too: this model is built apart)
    size = CONTRACTS[name].shape_input if name in CONTRACTS else None
    size = size or MIN_INPUT_SIZE
    with dtype_policy("bf16"):
        model = models.create_model(name, input_size=size)
    assert model.layers[-1].compute_dtype == "float32" and model.output.dtype == "float32"
    (softmax,) = [layer for layer in model.layers if layer.name.endswith("_softmax")]
    assert softmax.compute_dtype == "float32"
    logits = model.get_layer(softmax.name.removesuffix("_softmax"))
    kernel, _ = logits.get_weights()
    logits.set_weights([np.zeros_like(kernel), np.array([8.0, 0.0], dtype="float32")])  # a confident logit
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
    # 1 / (1 + e^-8) = 0.99966: in bf16 (8 significant bits) it would round to exactly 1.0
    assert probabilities.dtype == np.float32 and (probabilities[:, 0] < 1.0).all()
    np.testing.assert_allclose(probabilities[:, 0], 1 / (1 + np.exp(-8.0)), rtol=1e-6)


@pytest.mark.parametrize("name", models.list_models())
def test_parameters_at_the_default_input_size(name):
    contract, model = CONTRACTS[name], default_model(name)
    assert models.get_model_entry(name).default_input_size == contract.input_size
    assert tuple(model.input.shape) == (None, contract.input_size, contract.input_size, 3)
    assert model.count_params() == contract.params


@pytest.mark.parametrize("name", models.list_models())
def test_trainable_parameters_under_each_frozen_option(name):
    contract, model = CONTRACTS[name], default_model(name)
    if name not in BACKBONES:
        assert trainable_parameters(model) == contract.params
        with pytest.raises(models.ModelOptionError, match="unknown option frozen"):
            models.create_model(name, frozen="all")
        return
    backbone = model.get_layer(BACKBONE_LAYER)
    try:
        counts = {}
        for frozen in FROZEN_OPTIONS:
            freeze_backbone(backbone, frozen)
            counts[frozen] = trainable_parameters(model)
    finally:
        freeze_backbone(backbone, 0)  # the builder's default: leave the shared model as built
    assert counts == contract.trainable
    # BatchNormalization's moving statistics are never trainable: even frozen=0 stays below params
    assert contract.trainable[0] < contract.params
    assert contract.trainable["all"] < contract.trainable[20] < contract.trainable[10] < contract.trainable[0]


@pytest.mark.parametrize("name", models.list_models())
def test_forward_flops_are_pinned(name):
    assert forward_flops(default_model(name)) == CONTRACTS[name].flops


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the reference is TensorFlow's profiler, which traces the model as a tf.function: TensorFlow backend only",
)
@pytest.mark.slow
@pytest.mark.parametrize("name", models.list_models())
def test_forward_flops_within_3_percent_of_tensorflow_profiler(name):
    from tests.flops_reference import tf_profiler_flops

    model = default_model(name)
    extra = [model.get_layer(layer).output for layer in REFERENCE_EXTRA_OUTPUTS.get(name, ())]
    graph = keras.Model(model.input, [model.get_layer(CLASSIFIER_LAYER).output, *extra]) if extra else model
    reference = tf_profiler_flops(graph)
    assert forward_flops(model) == pytest.approx(reference, rel=0.03)


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="builds every model again in a fresh process: ~170 s on 2 CPU cores under JAX (XLA compiles each new "
    "weight shape's initializer), over the JAX leg's time; the counts are checked in this process above",
)
@pytest.mark.slow
def test_models_command_lists_every_model_as_json():
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "models", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == sorted(CONTRACTS)
    for row in rows:
        assert set(row) == {"name", "params", "trainable_params", "input_size", "gflops"}
        contract = CONTRACTS[row["name"]]
        assert row["params"] == contract.params
        assert row["trainable_params"] == contract.trainable.get(0, contract.params)
        assert row["input_size"] == contract.input_size
        assert row["gflops"] == pytest.approx(contract.flops / 1e9, abs=1e-4)
    levi_hassner = next(row for row in rows if row["name"] == "levi_hassner")
    assert levi_hassner["params"] == 8_856_066


def test_models_command_table_and_unknown_pattern(capsys):
    from models.__main__ import main

    assert main(["levi_hassner"]) == 0
    table = capsys.readouterr().out
    assert "| levi_hassner " in table and "8,856,066" in table and "levi_hassner_nocrop" not in table
    assert main(["--json", "nothing*"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no registered model matches 'nothing*'" in error
