"""The decode-once cache: contents, reuse, rebuild on change, concurrent builds, memory, statistics."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.specs import TrialSpec
from bench.trial.fit import load_trial_data
from data.adience import load_faces, split_folds
from data.cache import IMAGES_FILE, MANIFEST_FILE, channel_statistics, ensure_cache, open_cache
from data.decode import decode_face
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def cache(small_synthetic, tmp_path_factory):
    return ensure_cache(small_synthetic, cache_root=tmp_path_factory.mktemp("cache"), workers=2)


def test_cache_holds_every_labelled_face_decoded_once(cache, small_synthetic):
    table = load_faces(small_synthetic)
    assert len(cache.faces) == len(table.faces) == cache.slots
    assert list(cache.faces["path"]) == list(table.faces["path"])
    assert set(cache.faces.columns) >= {"user_id", "face_id", "original_image", "path", "gender", "fold", "slot"}
    assert (cache.faces["gender"].to_numpy() == table.faces["gender"].to_numpy()).all()
    assert (cache.folder / IMAGES_FILE).stat().st_size == cache.slots * 256 * 256 * 3
    manifest = json.loads((cache.folder / MANIFEST_FILE).read_text())
    assert manifest["fingerprint"] == cache.fingerprint and cache.folder.name == cache.fingerprint[:20]
    for row in cache.faces.sample(5, random_state=0).itertuples():
        np.testing.assert_array_equal(cache.read([row.slot])[0], decode_face(row.path))
        np.testing.assert_array_equal(cache.images[row.slot], decode_face(row.path))


def test_read_returns_slots_in_the_order_asked(cache):
    slots = [7, 3, 4, 5, 0, 7]
    np.testing.assert_array_equal(cache.read(slots), np.asarray(cache.images)[slots])
    with pytest.raises(IndexError, match="slot out of range"):
        cache.read([cache.slots])


def test_an_unchanged_dataset_reuses_the_cache(cache, small_synthetic):
    stamp = (cache.folder / IMAGES_FILE).stat().st_mtime_ns
    again = ensure_cache(small_synthetic, cache_root=cache.folder.parent.parent.parent)
    assert again.folder == cache.folder
    assert (again.folder / IMAGES_FILE).stat().st_mtime_ns == stamp


def test_a_changed_dataset_rebuilds_the_cache(small_synthetic, tmp_path):
    root = tmp_path / "adience"
    shutil.copytree(small_synthetic, root)
    first = ensure_cache(root, cache_root=tmp_path / "cache", workers=2)
    face = first.faces.iloc[0]
    Image.new("RGB", (256, 256), (255, 0, 0)).save(face["path"], format="JPEG")
    second = ensure_cache(root, cache_root=tmp_path / "cache", workers=2)
    assert second.folder != first.folder and second.fingerprint != first.fingerprint
    assert not first.folder.exists()  # the stale cache is gone
    red = second.read([second.faces.iloc[0]["slot"]])[0]
    assert red[..., 0].mean() > 250 and red[..., 1].mean() < 5
    # an edited fold file changes the fingerprint too
    fold = root / "fold_4_data.txt"
    fold.write_text("\n".join(fold.read_text().splitlines()[:-1]) + "\n")
    third = ensure_cache(root, cache_root=tmp_path / "cache", workers=2)
    assert third.folder != second.folder and len(third.faces) <= len(second.faces)


def test_two_processes_building_at_once_leave_one_complete_cache(small_synthetic, tmp_path):
    code = (
        "import sys; from data.cache import ensure_cache; "
        "c = ensure_cache(sys.argv[1], cache_root=sys.argv[2], workers=1); print(c.folder, len(c.faces))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    builders = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(small_synthetic), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [builder.communicate(timeout=120)[0].strip() for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0]
    assert outputs[0] == outputs[1]
    folder = Path(outputs[0].split()[0])
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no .partial- left behind
    cache = open_cache(folder)
    np.testing.assert_array_equal(cache.read([0])[0], decode_face(cache.faces.iloc[0]["path"]))


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="resident memory is read from /proc (Linux only)")
def test_iterating_the_cache_keeps_resident_memory_far_below_its_size(small_synthetic, tmp_path):
    from data.loader import FaceBatches

    cache = ensure_cache(small_synthetic, cache_root=tmp_path, workers=2)
    size = cache.slots * cache.image_bytes
    batches = FaceBatches(cache, cache.faces["slot"], cache.faces["gender"], 4, shuffle=True, seed=0)
    stream = batches.stream(epochs=3)
    for _ in range(3):  # warm-up: the first batches allocate the buffers every later batch reuses
        next(stream)
    before = _resident_bytes()
    peak = before
    for images, _ in stream:
        assert images.dtype == np.uint8
        peak = max(peak, _resident_bytes())
    assert peak - before < size / 4, f"resident memory grew {(peak - before) / 2**20:.1f} MiB, cache {size / 2**20:.1f}"
    # the measurement can see a whole cache: touching the memory map pages it all in
    mapped = cache.images
    assert int(mapped.sum(dtype=np.uint64)) > 0
    assert _resident_bytes() - before > size / 2
    del mapped


def test_channel_statistics_match_numpy_and_are_remembered(cache):
    slots = cache.faces["slot"].to_numpy()[::3]
    mean, std = channel_statistics(cache, slots, chunk=7)
    pixels = np.asarray(cache.images)[np.sort(slots)].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-9)
    memo = list(cache.folder.glob("channel-stats-*.json"))
    assert memo and channel_statistics(cache, slots[::-1]) == (mean, std)


def test_per_channel_statistics_come_from_the_training_split_only(small_synthetic):
    spec = TrialSpec(name="pc", model="levi_hassner", normalisation="per_channel", policy="nocrop")
    data = load_trial_data(spec, ensure_cache(small_synthetic))
    train, val = split_folds(data.cache.faces, spec.val_fold, spec.train_folds)
    assert data.channel_stats == channel_statistics(data.cache, train["slot"])
    everything = channel_statistics(data.cache, data.cache.faces["slot"])
    validation = channel_statistics(data.cache, val["slot"])
    assert data.channel_stats != everything and data.channel_stats != validation
    assert set(data.val_slots) == set(val["slot"]) and not set(data.train_slots) & set(data.val_slots)
