"""Occlusion graph: constructed overlaps, evidence fusion, cycle resolution, fallbacks."""
import numpy as np
import pytest

from ros2_amodal_seg.errors import InvalidInputError
from ros2_amodal_seg.fusion.order import (SOURCE_LIDAR, SOURCE_MASK, SOURCE_MODEL, OrderConfig,
                                          build_occlusion_graph, overlap_counts, topological_order)
from ros2_amodal_seg.types import OcclusionEdgeData

H, W = 60, 80
NAN2 = np.array([np.nan, np.nan])


def _rect(r0, r1, c0, c1):
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def test_two_overlapping_squares_front_is_visible_in_overlap():
    a = _rect(10, 30, 10, 30)          # A: 20x20, hidden bottom-right by B
    b = _rect(20, 40, 20, 40)          # B: in front
    amodal = np.stack([a, b])
    visible = np.stack([a & ~b, b])
    occ, aa = overlap_counts(amodal, visible)
    assert occ[0, 1] == 100 and occ[1, 0] == 0 and aa[0, 1] == 100   # 10x10 overlap
    res = build_occlusion_graph(amodal, visible, np.zeros(2), NAN2)
    assert len(res.edges) == 1
    e = res.edges[0]
    assert (e.occluder_id, e.occludee_id, e.overlap_px) == (2, 1, 100)
    assert e.source == SOURCE_MASK and e.confidence == pytest.approx(1.0)
    assert res.order == [2, 1] and res.rank.tolist() == [1, 0]


def test_disjoint_instances_get_no_edge_and_are_ordered_by_depth():
    amodal = np.stack([_rect(0, 10, 0, 10), _rect(30, 40, 30, 40)])
    res = build_occlusion_graph(amodal, amodal.copy(), np.zeros(2), np.array([9.0, 4.0]))
    assert res.edges == [] and res.order == [2, 1]


def test_cycle_is_broken_at_the_weakest_edge():
    # A hides B on 100 px, B hides C on 60 px, C hides A on only 5 px: a cycle A>B>C>A.
    r_ab, r_bc, r_ca = _rect(0, 10, 0, 10), _rect(20, 30, 0, 6), _rect(40, 41, 0, 5)
    own_a, own_b, own_c = _rect(0, 5, 50, 60), _rect(10, 15, 50, 60), _rect(20, 25, 50, 60)
    amodal = np.stack([own_a | r_ab | r_ca, own_b | r_ab | r_bc, own_c | r_bc | r_ca])
    visible = np.stack([own_a | r_ab, own_b | r_bc, own_c | r_ca])
    res = build_occlusion_graph(amodal, visible, np.zeros(3), np.full(3, np.nan))
    kept = {(e.occluder_id, e.occludee_id) for e in res.edges}
    assert kept == {(1, 2), (2, 3)}
    assert [(e.occluder_id, e.occludee_id) for e in res.dropped] == [(3, 1)]
    assert res.dropped[0].confidence == pytest.approx(5 / 20)      # below saturation
    assert res.order == [1, 2, 3]


def test_model_scores_and_lidar_decide_without_mask_evidence():
    # the overlap is hidden in both visible masks (a third, unlisted object covers it)
    a, b = _rect(10, 30, 10, 30), _rect(20, 40, 20, 40)
    amodal = np.stack([a, b])
    visible = np.stack([a & ~b, b & ~a])
    res = build_occlusion_graph(amodal, visible, np.array([0.8, 0.2]), NAN2)      # model: B nearer
    assert [(e.occluder_id, e.occludee_id, e.source) for e in res.edges] == [(2, 1, SOURCE_MODEL)]
    res = build_occlusion_graph(amodal, visible, np.zeros(2), np.array([3.0, 8.0]))  # lidar: A nearer
    assert [(e.occluder_id, e.occludee_id, e.source) for e in res.edges] == [(1, 2, SOURCE_LIDAR)]
    # agreeing evidence sets both bits; conflicting evidence: the stronger (weighted) wins
    res = build_occlusion_graph(amodal, visible, np.array([0.2, 0.8]), np.array([3.0, 8.0]))
    assert res.edges[0].source == SOURCE_MODEL | SOURCE_LIDAR and res.edges[0].confidence > 0.9
    cfg = OrderConfig(model_weight=2.0, lidar_weight=1.0)
    res = build_occlusion_graph(amodal, visible, np.array([0.8, 0.2]), np.array([3.0, 8.0]), cfg)
    assert (res.edges[0].occluder_id, res.edges[0].source) == (2, SOURCE_MODEL)
    assert 0 < res.edges[0].confidence < 0.5


def test_mask_evidence_outweighs_a_wrong_lidar_depth():
    a, b = _rect(10, 30, 10, 30), _rect(20, 40, 20, 40)
    amodal, visible = np.stack([a, b]), np.stack([a & ~b, b])
    res = build_occlusion_graph(amodal, visible, np.zeros(2), np.array([5.0, 9.0]))  # lidar says A nearer
    e = res.edges[0]
    assert (e.occluder_id, e.occludee_id) == (2, 1) and e.source == SOURCE_MASK
    assert e.confidence == pytest.approx((3.0 - 1.0 * np.tanh(4.0 / (0.05 + 0.05 * 7.0))) / 4.0)


def test_nan_depth_instance_is_placed_by_its_order_score():
    amodal = np.stack([_rect(0, 5, 0, 5), _rect(10, 15, 10, 15), _rect(20, 25, 20, 25)])
    res = build_occlusion_graph(amodal, amodal.copy(), np.array([0.1, 0.5, 0.9]), np.array([2.0, np.nan, 10.0]))
    assert res.order == [1, 2, 3]


def test_topological_order_rejects_cycles_and_input_mismatch():
    e = [OcclusionEdgeData(1, 2, 1, 1.0), OcclusionEdgeData(2, 1, 1, 1.0)]
    with pytest.raises(InvalidInputError):
        topological_order(2, e, np.zeros(2))
    with pytest.raises(InvalidInputError):
        build_occlusion_graph(np.zeros((2, H, W), bool), np.zeros((2, H, W), bool), np.zeros(3), NAN2)
