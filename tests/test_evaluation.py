"""Levi & Hassner's protocol: the ten views, over-sampled accuracy, duplicates kept, five folds, published figures."""

import math

import keras
import numpy as np
import pytest

from bench.execute.runner import PatienceStopper
from bench.plan.planner import RunRequest, plan_run
from bench.report.leaderboard import render_leaderboard
from bench.report.results import TrialRecord, trials_table
from bench.specs import TrialSpec
from bench.trial.evaluation import build_oversampled_model, oversampled_accuracy
from bench.trial.fit import build_trial_model, run_trial
from bench.trial.inference import SMOKE_MEASURES
from bench.trial.measure import Patience
from data.adience import load_faces, with_duplicates
from data.views import OversampledViews, view_count, view_offsets
from tests.test_results_and_leaderboard import epoch, run_info


def position_image(side: int = 256) -> np.ndarray:
    """One face whose pixel (r, c) holds (r, c, 7): every view says where it was cut."""
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype("float32")[None]


@pytest.mark.backends
def test_the_ten_views_are_the_four_corners_the_centre_and_their_mirrors():
    views = keras.ops.convert_to_numpy(OversampledViews(227)(position_image()))
    assert views.shape == (10, 227, 227, 3)
    far, centre = 256 - 227, (256 - 227) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (centre, centre)]
    assert view_offsets(256, 227) == corners and centre == 14  # the single-crop validation's offset too
    for index, (top, left) in enumerate(corners):
        crop = views[index]
        assert tuple(crop[0, 0, :2]) == (top, left) and tuple(crop[226, 226, :2]) == (top + 226, left + 226)
        mirror = views[5 + index]
        assert tuple(mirror[0, 0, :2]) == (top, left + 226)  # the right edge comes first
        np.testing.assert_array_equal(mirror, crop[:, ::-1, :])
    whole = keras.ops.convert_to_numpy(OversampledViews(None)(position_image(64)))
    assert whole.shape == (2, 64, 64, 3) and np.array_equal(whole[1], whole[0][:, ::-1])


@pytest.mark.backends
def test_views_of_a_batch_are_grouped_face_by_face():
    faces = np.concatenate([position_image(), position_image() + 1000])
    views = keras.ops.convert_to_numpy(OversampledViews(227)(faces))
    assert (views[:10, 0, 0, 2] == 7).all() and (views[10:, 0, 0, 2] == 1007).all()


@pytest.mark.backends
def test_oversampled_accuracy_is_the_mean_of_the_ten_views_probabilities_by_hand(small_cache):
    spec = TrialSpec(name="os", model="tiny_cnn", model_options={"input_size": 64}, policy="report", seed=3)
    model, network = build_trial_model(spec)
    oversampled = build_oversampled_model(model, network)
    slots = small_cache.faces["slot"].to_numpy()[:5]
    faces = small_cache.read(slots)
    normalise = model.get_layer("preprocessing").normalise
    by_hand = np.zeros((len(faces), 2))
    for top, left in view_offsets(256, 227):
        crop = faces[:, top : top + 227, left : left + 227, :].astype("float32")
        for view in (crop, crop[:, :, ::-1, :]):
            prepared = keras.layers.Resizing(64, 64)(normalise(view))
            by_hand += keras.ops.convert_to_numpy(network(prepared)) / 10
    np.testing.assert_allclose(oversampled.predict_on_batch(faces), by_hand, rtol=1e-5, atol=1e-6)
    labels = small_cache.faces["gender"].to_numpy()[:5]
    assert oversampled_accuracy(oversampled, small_cache, slots, labels) == pytest.approx(
        float((by_hand.argmax(axis=1) == labels).mean())
    )


@pytest.mark.backends
def test_oversampled_views_only_where_the_policy_crops_and_mirrors_only_where_it_flips():
    views = keras.ops.convert_to_numpy(OversampledViews(227, mirror=False)(position_image()))
    assert views.shape == (5, 227, 227, 3) and view_count(256, 227, mirror=False) == 5
    options = {"input_size": 32}
    for policy, keys, views in (("nocrop", {}, None), ("none", {}, None), ("upright", {"crop": 0.5}, 5)):
        spec = TrialSpec(name="v", model="tiny_cnn", model_options=options, policy=policy, policy_keys=keys)
        oversampled = build_oversampled_model(*build_trial_model(spec, image_size=64))
        if views is None:
            assert oversampled is None, policy
        else:
            assert oversampled.get_layer("oversampled_views").mirror is False
            assert oversampled.predict_on_batch(np.zeros((2, 64, 64, 3), "uint8")).shape == (2, 2)


def test_a_trial_reports_its_oversampled_accuracy_at_its_last_epoch(small_cache):
    spec = TrialSpec(name="t", model="tiny_cnn", model_options={"input_size": 32}, epochs=2, batch_size=16)
    spec = spec.replace(train_limit=32, val_limit=16, optimizer="adam", momentum=0.0, run_eagerly=True)
    reports = []
    run_trial(spec, small_cache, reports.append)
    assert math.isnan(reports[0]["val_accuracy_oversampled"]) and math.isnan(reports[0]["oversample_seconds"])
    assert 0 <= reports[1]["val_accuracy_oversampled"] <= 1 and reports[1]["oversample_seconds"] > 0
    assert reports[1]["oversampled_faces"] == reports[1]["val_images"] and reports[0]["infer_batches"] >= 3


def test_a_smoke_trial_oversamples_its_first_faces_and_times_one_inference_batch_labelled_so(small_cache):
    spec = TrialSpec(name="t", model="tiny_cnn", model_options={"input_size": 32}, epochs=1, batch_size=16)
    spec = spec.replace(train_limit=32, val_limit=40, optimizer="adam", momentum=0.0, smoke_measures=True)
    reports = []
    run_trial(spec, small_cache, reports.append)
    assert reports[0]["val_images"] > SMOKE_MEASURES.oversample_faces == reports[0]["oversampled_faces"]
    assert reports[0]["infer_batches"] == 1 and 0 <= reports[0]["val_accuracy_oversampled"] <= 1
    text = render_leaderboard(run_info(), trials_table([TrialRecord(spec, reports)], target_accuracy=0.8))
    assert f"(smoke: {SMOKE_MEASURES.oversample_faces} faces)" in text and "(smoke: 1 batch)" in text
    full = trials_table([TrialRecord(spec.replace(smoke_measures=False), reports)], target_accuracy=0.8)
    assert "(smoke:" not in render_leaderboard(run_info(), full)


def test_the_trial_and_the_stopper_apply_one_patience_rule(tmp_path):
    curve = [0.5, 0.6, 0.6, 0.59, 0.6, 0.7]
    rule = Patience(3)
    in_trial = [rule.exhausted(e, a) for e, a in enumerate(curve, start=1)]
    stopper = PatienceStopper(tmp_path / "reasons.json")
    by_stopper = [stopper("t", {"epoch": e, "val_accuracy": a, "patience": 3}) for e, a in enumerate(curve, start=1)]
    assert in_trial == by_stopper == [False, False, False, False, True, False]
    assert not any(Patience(None).exhausted(e, 0.5) for e in range(1, 10))


def test_keeping_duplicates_reproduces_levi_and_hassners_per_fold_lists(official_folds):
    faces = load_faces(official_folds).faces
    listed = with_duplicates(faces)
    assert len(faces) == 17_492 and len(listed) == 17_603
    assert listed.groupby("fold").size().tolist() == [4007, 3624, 3191, 3318, 3463]
    assert listed.equals(
        with_duplicates(
            load_faces(official_folds, keep_duplicates=True)
            .faces.drop_duplicates(["user_id", "face_id", "original_image"])
            .reset_index(drop=True)
        )
    )


def protocol_request(protocol: str, trials: str | None = None) -> RunRequest:
    return RunRequest("baseline", "smoke", "", True, trials, {}, False, protocol=protocol)


def test_the_levi_protocol_plans_five_folds_with_duplicates_and_the_caffe_row():
    planned = plan_run(protocol_request("levi", "levi_hassner_caffe*"))
    assert [spec.val_fold for spec in planned.specs] == [0, 1, 2, 3, 4]
    assert all(spec.keep_duplicates and spec.val_fold not in spec.train_folds for spec in planned.specs)
    assert {spec.group for spec in planned.specs} == {"levi_hassner_caffe_sgd_lr=1e-3_wd=5e-4_step=10k"}
    caffe = planned.specs[0]
    assert caffe.model_options == {"lrn_after_conv3": False} and caffe.weight_decay == 5e-4
    assert (caffe.reference, caffe.reference_std) == (0.859, 0.014)
    assert (caffe.reference_oversampled, caffe.reference_oversampled_std) == (0.868, 0.014)
    port = plan_run(protocol_request("levi", "levi_hassner_sgd*")).specs[0]
    assert port.reference is None  # the report's figure is for its fold-4 protocol, not this one
    report = plan_run(protocol_request("report"))
    assert [spec.val_fold for spec in report.specs] == [4, 4] and not any(s.keep_duplicates for s in report.specs)
    assert report.specs[0].reference == 0.9498


def test_the_leaderboard_shows_single_and_oversampled_accuracy_beside_the_published_figures():
    records = []
    for fold, (single, oversampled) in enumerate([(0.85, 0.86), (0.87, 0.88), (0.86, 0.87)]):
        spec = TrialSpec(name=f"caffe.fold={fold}", model="levi_hassner", epochs=2, group="caffe")
        spec = spec.replace(reference=0.859, reference_std=0.014, reference_oversampled=0.868)
        spec = spec.replace(reference_oversampled_std=0.014, keep_duplicates=True)
        records.append(TrialRecord(spec, [epoch(1, 0.5), epoch(2, single, val_accuracy_oversampled=oversampled)]))
    info = run_info(protocol="Levi & Hassner's: 5-fold", counting="17,603 rows", cv=True, synthetic=False)
    text = render_leaderboard(info, trials_table(records, target_accuracy=0.8))
    row = next(line for line in text.splitlines() if line.startswith("| caffe ") and "0.8590 ± 0.0140" in line)
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1].startswith("0.8600 ± 0.0100 [") and cells[1].endswith("n=3")
    assert cells[2] == "0.8590 ± 0.0140"
    assert cells[3].startswith("0.8700 ± 0.0100 [") and cells[4] == "0.8680 ± 0.0140"
    assert "- protocol: Levi & Hassner's: 5-fold; faces: 17,603 rows" in text
    assert "over-sampled, only where the policy crops: the mean of the softmax outputs over the four corner" in text
