"""evaluate_predictions: perfect predictions give AP 100, shuffled ones a low AP; the other metrics."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ros2_amodal_seg import masks as M
from ros2_amodal_seg.model.evaluate import evaluate_predictions
from test_model_helpers import make_dataset, write_dataset


def gt_as_predictions(ds):
    preds = []
    for s in ds.samples:
        idx = {a.id: k for k, a in enumerate(s.annotations)}
        # depth rank from the occlusion relation: an occluder is nearer than what it occludes
        n = len(s.annotations)
        depth = np.zeros(n)
        for _ in range(n):
            for k, a in enumerate(s.annotations):
                for o in a.occluded_by:
                    if o in idx:
                        depth[k] = max(depth[k], depth[idx[o]] + 1)
        ranks = np.argsort(np.argsort(depth, kind="stable"), kind="stable")
        for k, a in enumerate(s.annotations):
            preds.append({"image_id": s.image_id, "category_id": a.category_id, "score": 0.9,
                          "segmentation": M.encode(a.amodal), "visible_mask": M.encode(a.visible),
                          "occlude_rate": a.occlude_rate, "depth_rank": int(ranks[k]),
                          "occluded_by": [idx[o] for o in a.occluded_by if o in idx]})
    return preds


def test_gt_as_prediction_is_perfect():
    ds = make_dataset(8)
    assert sum(a.occlude_rate > 0.15 for s in ds.samples for a in s.annotations) > 0
    res = evaluate_predictions(ds, gt_as_predictions(ds))
    for k in ("amodal_AP", "amodal_AP50", "amodal_AP75", "agnostic_amodal_AP", "agnostic_amodal_AP50", "visible_AP",
              "occluded_AP", "PQ", "SQ", "RQ"):
        assert res[k] == pytest.approx(100.0), k
    assert res["occlusion_mae"] == pytest.approx(0.0, abs=1e-9)
    assert res["order_pairs"] > 0 and res["order_accuracy"] == 1.0
    bins = res["recall_by_occlusion"]
    assert sum(b["num_gt"] for b in bins) == res["num_gt"] and sum(b["num_gt"] > 0 for b in bins) >= 2
    for b in bins:
        if b["num_gt"]:
            assert b["recall50"] == b["recall50_any_class"] == b["mean_best_iou"] == 1.0


def test_recall_by_occlusion_separates_class_from_mask_errors():
    ds = make_dataset(8)
    wrong = [dict(p, category_id=p["category_id"] % 5 + 1) for p in gt_as_predictions(ds)]
    res = evaluate_predictions(ds, wrong)
    # every mask exact, every class wrong: no AP with classes, all of it without
    assert res["amodal_AP"] == pytest.approx(0.0) and res["agnostic_amodal_AP"] == pytest.approx(100.0)
    for b in res["recall_by_occlusion"]:
        if b["num_gt"]:
            # (a relabelled neighbour may overlap a little)
            assert b["recall50"] == 0.0 and b["recall50_any_class"] == 1.0 and b["mean_best_iou"] < 0.2
    # bins by hand: occlusion 0.15 is unoccluded, just above it is the next bin, 1.0 the last
    from ros2_amodal_seg.model.evaluate import _occlusion_bin

    assert [_occlusion_bin(r) for r in (0.0, 0.15, 0.1501, 0.5, 0.7, 0.71, 1.0)] == [0, 0, 1, 2, 3, 4, 4]


def test_repeated_annotation_ids_across_images_lose_nothing():
    """Two datasets merged (image ids offset, annotation ids repeated) still score GT-as-prediction 100."""
    a, b = make_dataset(4, seed=0), make_dataset(4, seed=10)
    for s in b.samples:
        s.image_id += 1000
    merged = type(a)(categories=a.categories, samples=a.samples + b.samples)
    ids = [x.id for s in merged.samples for x in s.annotations]
    assert len(ids) > len(set(ids))  # the repetition this test is about
    res = evaluate_predictions(merged, gt_as_predictions(merged))
    for k in ("amodal_AP", "visible_AP", "occluded_AP"):
        assert res[k] == pytest.approx(100.0), k
    assert res["order_accuracy"] == 1.0


def test_shuffled_prediction_scores_low():
    ds = make_dataset(8)
    preds = gt_as_predictions(ds)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(preds))
    shuffled = [dict(p, segmentation=preds[j]["segmentation"], visible_mask=preds[j]["visible_mask"],
                     image_id=p["image_id"]) for p, j in zip(preds, perm)]
    # masks are the same size everywhere (48x64), so a mask from another object lands elsewhere
    res = evaluate_predictions(ds, shuffled)
    assert res["amodal_AP"] < 30 and res["visible_AP"] < 30
    # reversed depth order -> order accuracy 0
    rev = [dict(p, depth_rank=-p["depth_rank"]) for p in gt_as_predictions(ds)]
    assert evaluate_predictions(ds, rev)["order_accuracy"] == 0.0


def test_occluded_ap_ignores_unoccluded_objects():
    ds = make_dataset(8)
    preds = gt_as_predictions(ds)
    by_id = {(s.image_id, M.encode(a.amodal)["counts"]): a for s in ds.samples for a in s.annotations}
    only_unocc = [p for p in preds if by_id[(p["image_id"], p["segmentation"]["counts"])].occlude_rate <= 0.15]
    res = evaluate_predictions(ds, only_unocc)
    assert res["occluded_AP"] == pytest.approx(0.0)
    assert 0 < res["amodal_AP"] < 100


def test_alternative_class_entries_count_for_ap_only():
    ds = make_dataset(8)
    preds = gt_as_predictions(ds)
    # every object reported once more under a wrong class, lower scored, as "alt_of" its entry
    index = {}
    for p in preds:
        index[p["image_id"]] = index.get(p["image_id"], -1) + 1
        p["_i"] = index[p["image_id"]]
    alts = [dict(p, category_id=p["category_id"] % 5 + 1, score=0.3, alt_of=p["_i"]) for p in preds]
    res = evaluate_predictions(ds, preds + alts, score_threshold=0.2)
    assert res["amodal_AP"] == pytest.approx(100.0)        # ranked after every true detection
    assert res["PQ"] == pytest.approx(100.0) and res["order_accuracy"] == 1.0
    # the same entries without the mark are extra instances: PQ counts them as false positives
    plain = [{k: v for k, v in a.items() if k != "alt_of"} for a in alts]
    assert evaluate_predictions(ds, preds + plain, score_threshold=0.2)["PQ"] < 80


def test_evaluate_cli(tmp_path):
    d = write_dataset(tmp_path / "ds", 3)
    from ros2_amodal_seg.model.data import load_amodal_dataset

    ds = load_amodal_dataset(d)
    (tmp_path / "p.json").write_text(json.dumps(gt_as_predictions(ds)))
    r = subprocess.run([sys.executable, "-m", "ros2_amodal_seg.cli", "evaluate", str(d / "annotations.json"),
                        str(tmp_path / "p.json"), "--plot", str(tmp_path / "pr.png"), "--json", str(tmp_path / "m.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pr.png").stat().st_size > 1000
    assert json.loads((tmp_path / "m.json").read_text())["amodal_AP"] == pytest.approx(100.0)
