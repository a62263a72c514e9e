"""Accuracy against the synthetic world's exact ground truth (GT masks as input).

Seeds 0..9 of each preset. Measured on these seeds (docs/fusion.md has 0..29):
street   order 1.000 (26 pairs), centroid rel. median 0.0062 (surface mean 0.037),
         BEV IoU fused 0.726 (visible-only 0.267, fused without amodal 0.568),
         occluded-object footprint recall fused 0.900 / no-amodal 0.481 / visible 0.162;
tabletop order 1.000 (35 pairs), centroid rel. median 0.0136 (surface mean 0.040),
         BEV IoU fused 0.721, occluded recall fused 0.812 / no-amodal 0.600 / visible 0.289.
Depth camera instead of the LiDAR (``source="depth"``: the renderer's depth with a depth camera's
noise and missing returns, back-projected at stride 2, the presets' depth variants), same seeds:
tabletop centroid rel. median 0.0102 (75 objects), BEV IoU fused 0.769 (visible-only 0.676);
street (the camera sees 10 m) centroid rel. median 0.0181 (30 objects), visible BEV precision 0.753.
Thresholds sit a little below those numbers (and at or above the issue's targets).
"""
import pytest

from ros2_amodal_seg.fusion.evaluate import evaluate

SEEDS = list(range(10))


@pytest.fixture(scope="module")
def street():
    return evaluate("shapes-street", SEEDS)


@pytest.fixture(scope="module")
def tabletop():
    return evaluate("shapes-tabletop", SEEDS)


@pytest.fixture(scope="module")
def tabletop_depth():
    return evaluate("shapes-tabletop", SEEDS, source="depth", ablation=False)


@pytest.fixture(scope="module")
def street_depth():
    return evaluate("shapes-street", SEEDS, source="depth", ablation=False)


@pytest.mark.parametrize("preset", ["street", "tabletop"])
def test_pairwise_order_accuracy(preset, request):
    s = request.getfixturevalue(preset)
    assert s["order_pairs"] >= 20
    assert s["order_accuracy"] >= 0.98


def test_centroid_error_street(street):
    assert street["centroid_objects"] >= 40 and street["centroid_missing"] == 0
    assert street["centroid_rel_median"] <= 0.01             # issue target: 0.05
    # the box / ground-plane centre estimate beats the plain (surface-biased) mean of the points
    assert street["centroid_rel_median"] < 0.5 * street["centroid_rel_median_surface"]


def test_centroid_error_tabletop(tabletop):
    assert tabletop["centroid_objects"] >= 40 and tabletop["centroid_missing"] == 0
    assert tabletop["centroid_rel_median"] <= 0.02           # issue target: 0.05
    assert tabletop["centroid_rel_median"] < tabletop["centroid_rel_median_surface"]


def test_bev_iou_street(street):
    assert street["bev_resolution"] == pytest.approx(0.2)
    assert street["bev_iou_fused"] >= 0.70
    assert street["bev_iou_fused"] > street["bev_iou_visible"] + 0.3


def test_bev_iou_tabletop(tabletop):
    assert tabletop["bev_iou_fused"] >= 0.70


@pytest.mark.parametrize("preset,floor,gain_amodal", [("street", 0.85, 0.3), ("tabletop", 0.77, 0.15)])
def test_inferred_occupancy_raises_hidden_recall(preset, floor, gain_amodal, request):
    s = request.getfixturevalue(preset)
    assert s["bev_recall_occluded_fused"] >= floor
    assert s["bev_recall_occluded_fused"] >= s["bev_recall_occluded_visible"] + 0.4
    assert s["bev_recall_occluded_fused"] >= s["bev_recall_occluded_fused_noamodal"] + gain_amodal


def test_depth_camera_centroids_as_good_as_the_lidar_tabletop(tabletop_depth, tabletop):
    s = tabletop_depth
    assert s["source"] == "depth" and s["centroid_objects"] >= 60 and s["centroid_missing"] == 0
    assert s["centroid_rel_median"] <= 0.012
    assert s["centroid_rel_median"] <= tabletop["centroid_rel_median"]      # the LiDAR's: 0.0136
    assert s["centroid_rel_median"] < 0.5 * s["centroid_rel_median_surface"]
    assert s["order_accuracy"] >= 0.98 and s["bev_iou_fused"] >= 0.74


def test_depth_camera_on_the_street_sees_10_m_and_its_noisy_ground_is_not_an_obstacle(street_depth, street):
    s = street_depth
    assert 20 <= s["centroid_objects"] < street["centroid_objects"] and s["centroid_missing"] == 0
    assert s["centroid_rel_median"] <= 0.025                                 # issue target: 0.05
    assert s["bev_precision_visible"] >= 0.7        # 5 cm ground clearance: 0.25 (noise 0.2 m at 10 m)
