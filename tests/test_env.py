"""bench.trial.env: the manifest names every field, or says why one is missing."""

import dataclasses
import json
import re

from bench.trial.env import EnvManifest, collect_manifest, read_manifest, write_manifest
from tests.conftest import REPO_ROOT
from tests.fake_nvml import FakeGpu, FakeNvml, ManualClock

ALWAYS_KNOWN = ("created", "command", "seeds", "python", "platform", "cpu_cores", "cpu_count")


def assert_complete(manifest: EnvManifest):
    for spec_field in dataclasses.fields(EnvManifest):
        name = spec_field.name
        if name == "missing":
            continue
        value = getattr(manifest, name)
        assert value not in (None, []) or manifest.missing.get(name), f"{name} is empty and no reason is given"


def test_manifest_with_a_gpu_is_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nvml = FakeNvml(
        [FakeGpu("NVIDIA L4", lambda t: 1.0), FakeGpu("NVIDIA H100 80GB HBM3", lambda t: 1.0)], ManualClock()
    )
    manifest = collect_manifest(
        seeds=[2, 0, 2], argv=["-m", "bench.run", "--suite", "baseline"], nvml=nvml, cpu_matmul_peak_flops=5e10
    )
    assert_complete(manifest)
    assert manifest.gpus == ["NVIDIA H100 80GB HBM3"]
    assert manifest.nvidia_driver == "550.54.15" and manifest.cuda_driver == "12.4"
    assert manifest.seeds == [0, 2]
    assert manifest.command.endswith("-m bench.run --suite baseline")
    assert manifest.tensorflow and manifest.keras and manifest.keras_backend and manifest.ray
    assert re.fullmatch(r"[0-9a-f]{40}", manifest.git_commit) and isinstance(manifest.git_dirty, bool)
    assert manifest.cpu_model and manifest.cpu_cores >= 1
    assert manifest.cpu_matmul_peak_flops == 5e10
    assert "NVIDIA H100 80GB HBM3; NVIDIA driver 550.54.15, CUDA 12.4" in manifest.summary()
    assert manifest.device() == "NVIDIA H100 80GB HBM3"
    path = write_manifest(manifest, tmp_path)
    assert json.loads(path.read_text())["gpus"] == ["NVIDIA H100 80GB HBM3"]
    assert read_manifest(tmp_path) == manifest


def test_manifest_without_nvml_or_git_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    manifest = collect_manifest(seeds=[0], argv=[], repo=tmp_path, nvml=FakeNvml([], ManualClock(), fail_init=True))
    assert_complete(manifest)
    assert manifest.gpus == [] and "NVML Shared Library Not Found" in manifest.missing["gpus"]
    assert manifest.missing["nvidia_driver"] == manifest.missing["gpus"]
    assert "is not a git checkout" in manifest.missing["git_commit"]
    assert manifest.missing["cpu_matmul_peak_flops"] == "not measured for this run"
    assert "GPU none (NVML not available" in manifest.summary()
    assert manifest.device().startswith("CPU ")
    for name in ALWAYS_KNOWN:
        assert name not in manifest.missing


def test_manifest_of_this_checkout_names_its_commit():
    manifest = collect_manifest(seeds=[0], argv=[], repo=REPO_ROOT, nvml=FakeNvml([], ManualClock(), fail_init=True))
    assert manifest.git_commit and "git_commit" not in manifest.missing
