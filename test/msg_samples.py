"""Deterministic sample dataclasses for the message round-trip tests (shared by the
in-process tests and the two-process DDS peers)."""
from __future__ import annotations

import numpy as np

from ros2_amodal_seg.types import (AmodalInstanceArrayData, AmodalInstanceData, BevGridData, OcclusionEdgeData,
                                   OcclusionGraphData)

H, W = 120, 160
STAMP_NS = 1_700_000_123_456_789


def _blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    y0, x0 = rng.integers(0, h - 20), rng.integers(0, w - 20)
    m[y0:y0 + rng.integers(5, 20), x0:x0 + rng.integers(5, 20)] = True
    m &= rng.random((h, w)) > 0.1  # ragged edges and holes, so RLE has many runs
    return m


def make_instance_array(seed: int = 0) -> AmodalInstanceArrayData:
    rng = np.random.default_rng(seed)
    insts = []
    for i in range(1, 4):
        amodal = _blob(rng, H, W)
        visible = amodal & (rng.random((H, W)) > 0.3)
        insts.append(AmodalInstanceData(
            id=i, class_id=int(rng.integers(1, 6)), class_name=f"class_{i}", score=float(rng.random()),
            occlusion_rate=float(1 - visible.sum() / max(amodal.sum(), 1)), amodal_mask=amodal,
            visible_mask=visible, depth_rank=i - 1, depth_m=float(rng.uniform(1, 30)) if i != 2 else float("nan"),
            order_score=float(rng.normal()), frame_id="base_link",
            centroid=rng.normal(size=3) if i != 2 else np.full(3, np.nan), box_size=rng.uniform(0.1, 2, 3),
            box_orientation=np.array([0.0, 0.0, np.sin(0.3), np.cos(0.3)]), num_points=int(rng.integers(0, 500)),
            footprint=rng.normal(size=(5, 2)), occluded_by=[j for j in range(1, i)]))
    # an instance with an empty visible mask (fully occluded)
    amodal = _blob(rng, H, W)
    insts.append(AmodalInstanceData(id=4, class_id=3, class_name="sphere", score=0.5, occlusion_rate=1.0,
                                    amodal_mask=amodal, visible_mask=np.zeros((H, W), bool), occluded_by=[1]))
    return AmodalInstanceArrayData(stamp_ns=STAMP_NS, frame_id="camera_optical_frame", image_height=H,
                                   image_width=W, instances=insts)


def make_graph(seed: int = 0) -> OcclusionGraphData:
    rng = np.random.default_rng(seed)
    edges = [OcclusionEdgeData(1, 2, int(rng.integers(1, 1000)), float(rng.random()), 1 | 4),
             OcclusionEdgeData(2, 3, int(rng.integers(1, 1000)), float(rng.random()), 2)]
    return OcclusionGraphData(stamp_ns=STAMP_NS, frame_id="camera_optical_frame", edges=edges, order=[1, 2, 3, 4])


def make_bev(seed: int = 0) -> BevGridData:
    rng = np.random.default_rng(seed)
    rows, cols = 30, 40
    occ = rng.choice([0.0, 1.0, np.nan], size=(rows, cols)).astype(np.float32)
    layers = {"occupancy": occ,
              "inferred_occupancy": (rng.random((rows, cols)) > 0.8).astype(np.float32),
              "instance_id": rng.integers(0, 5, (rows, cols)).astype(np.float32),
              "class_id": rng.integers(0, 6, (rows, cols)).astype(np.float32),
              "height": np.where(occ == 1, rng.uniform(0, 3, (rows, cols)), np.nan).astype(np.float32)}
    return BevGridData(stamp_ns=STAMP_NS, frame_id="base_link", resolution=0.2, origin_xy=np.array([0.0, -4.0]),
                       layers=layers)


def assert_instance_arrays_equal(a: AmodalInstanceArrayData, b: AmodalInstanceArrayData) -> None:
    assert (a.stamp_ns, a.frame_id, a.image_height, a.image_width) == (b.stamp_ns, b.frame_id, b.image_height,
                                                                       b.image_width)
    assert len(a.instances) == len(b.instances)
    for x, y in zip(a.instances, b.instances):
        for f in ("id", "class_id", "class_name", "depth_rank", "frame_id", "num_points", "occluded_by"):
            assert getattr(x, f) == getattr(y, f), f
        for f in ("score", "occlusion_rate", "depth_m", "order_score"):
            np.testing.assert_allclose(getattr(x, f), getattr(y, f), rtol=1e-6, equal_nan=True, err_msg=f)
        for f in ("centroid", "box_size", "box_orientation", "footprint"):
            np.testing.assert_allclose(getattr(x, f), getattr(y, f), rtol=1e-6, atol=1e-6, equal_nan=True,
                                       err_msg=f)
        np.testing.assert_array_equal(x.amodal_mask, y.amodal_mask)
        np.testing.assert_array_equal(x.visible_mask, y.visible_mask)


def assert_graphs_equal(a: OcclusionGraphData, b: OcclusionGraphData) -> None:
    assert (a.stamp_ns, a.frame_id, a.order) == (b.stamp_ns, b.frame_id, b.order)
    assert len(a.edges) == len(b.edges)
    for x, y in zip(a.edges, b.edges):
        assert (x.occluder_id, x.occludee_id, x.overlap_px, x.source) == (y.occluder_id, y.occludee_id,
                                                                          y.overlap_px, y.source)
        assert abs(x.confidence - y.confidence) < 1e-6


def assert_bevs_equal(a: BevGridData, b: BevGridData) -> None:
    assert (a.stamp_ns, a.frame_id) == (b.stamp_ns, b.frame_id)
    assert abs(a.resolution - b.resolution) < 1e-6
    np.testing.assert_allclose(a.origin_xy, b.origin_xy)
    assert list(a.layers) == list(b.layers)
    for k in a.layers:
        np.testing.assert_array_equal(a.layers[k], b.layers[k], err_msg=k)
