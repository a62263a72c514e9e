"""Message builders of the node without DDS: markers and diagnostics."""
from __future__ import annotations

import numpy as np
import pytest
from visualization_msgs.msg import Marker

from ros2_amodal_seg.ros.diagnostics import (ERROR, OK, WARN, build_diagnostics, diagnostic_level,
                                             diagnostics_to_dict)
from ros2_amodal_seg.ros.markers import build_markers, marker_summary
from ros2_amodal_seg.types import AmodalInstanceArrayData, AmodalInstanceData, OcclusionEdgeData, OcclusionGraphData


def _arr():
    m = np.zeros((4, 4), bool)
    a = AmodalInstanceData(id=1, class_id=3, class_name="sphere", score=0.9, occlusion_rate=0.0, amodal_mask=m,
                           visible_mask=m, depth_m=5.0, centroid=np.array([5.0, 1.0, 0.5]),
                           box_size=np.array([1.0, 1.0, 1.0]),
                           footprint=np.array([[4.5, 0.5], [5.5, 0.5], [5.5, 1.5], [4.5, 1.5]]))
    b = AmodalInstanceData(id=2, class_id=1, class_name="box", score=0.8, occlusion_rate=0.4, amodal_mask=m,
                           visible_mask=m, depth_m=9.0, centroid=np.array([9.0, 1.0, 1.0]),
                           box_size=np.array([2.0, 2.0, 2.0]), occluded_by=[1])
    c = AmodalInstanceData(id=3, class_id=2, class_name="cylinder", score=0.7, occlusion_rate=0.1, amodal_mask=m,
                           visible_mask=m)  # no 3-D
    arr = AmodalInstanceArrayData(stamp_ns=5_000_000_123, frame_id="cam", image_height=4, image_width=4,
                                  instances=[a, b, c])
    g = OcclusionGraphData(stamp_ns=5_000_000_123, frame_id="cam",
                           edges=[OcclusionEdgeData(1, 2, 10, 0.9), OcclusionEdgeData(1, 3, 5, 0.5)], order=[1, 2, 3])
    return arr, g


def test_markers_deleteall_boxes_labels_arrows():
    arr, g = _arr()
    ma = build_markers(arr, g)
    assert ma.markers[0].action == Marker.DELETEALL
    assert marker_summary(ma) == {"boxes": 2, "labels": 2, "footprints": 1, "occlusion": 1}  # id 3 has no 3-D
    box = next(m for m in ma.markers if m.ns == "boxes" and m.id == 2)
    assert (box.pose.position.x, box.scale.x, box.header.frame_id) == (9.0, 2.0, "base_link")
    assert (box.header.stamp.sec, box.header.stamp.nanosec) == (5, 123)
    label = next(m for m in ma.markers if m.ns == "labels" and m.id == 2)
    assert label.text == "box 0.80 | occ 40% | 9.0m"
    assert label.pose.position.z > 2.0                       # above the box top (1 + 1 m)
    arrow = next(m for m in ma.markers if m.ns == "occlusion")
    assert arrow.type == Marker.ARROW and arrow.points[0].x == 5.0 and arrow.points[1].x == 9.0
    fp = next(m for m in ma.markers if m.ns == "footprints")
    assert len(fp.points) == 5 and fp.points[0].x == fp.points[-1].x   # closed loop


def test_diagnostic_levels_and_message():
    kw = dict(active=True, model_loaded=True, seconds_since_image=0.1, input_timeout_s=3.0, frames_in=10,
              frames_out=10, recent_bad_input=0)
    assert diagnostic_level(**kw)[0] == OK
    assert diagnostic_level(**{**kw, "model_loaded": False})[0] == ERROR
    assert diagnostic_level(**{**kw, "seconds_since_image": 5.0}) == (WARN, "no image for 5.0 s")
    assert diagnostic_level(**{**kw, "recent_bad_input": 2})[0] == WARN
    assert diagnostic_level(**{**kw, "frames_out": 3})[0] == WARN
    assert diagnostic_level(**{**kw, "active": False})[0] == OK
    msg = build_diagnostics(1, "amodal_seg", WARN, "x", {"device": "cpu", "rate": 9.87654, "n": 3},
                            {"model": {"p50": 10.0, "p95": 20.0, "max": 31.0, "n": 4}})
    d = diagnostics_to_dict(msg)
    assert d["amodal_seg: pipeline"]["level"] == WARN
    assert d["amodal_seg: pipeline"]["values"] == {"device": "cpu", "rate": "9.877", "n": "3"}
    assert d["amodal_seg: latency"]["values"]["model.p95_ms"] == "20.000"
    assert d["amodal_seg: latency"]["values"]["model.max_ms"] == "31.000"


@pytest.mark.parametrize("lifetime", [0.0, 1.5])
def test_marker_lifetime(lifetime):
    arr, g = _arr()
    m = build_markers(arr, g, lifetime_s=lifetime).markers[1]
    assert m.lifetime.sec + m.lifetime.nanosec * 1e-9 == pytest.approx(lifetime)


def test_session_helpers_occupancy_recall_and_predictions(tmp_path):
    import json

    from nav_msgs.msg import OccupancyGrid

    from ros2_amodal_seg import masks as M
    from ros2_amodal_seg.ros import conversions as conv
    from ros2_amodal_seg.ros.session import (instance_array_to_predictions, occupancy_object_recall,
                                             predictions_from_arrays, stamp_to_image_id)

    ann = {"images": [{"id": 7, "stamp_ns": 123}],
           "annotations": [{"image_id": 7, "footprint": [[2, 2], [4, 2], [4, 4], [2, 4]]},
                           {"image_id": 7, "footprint": [[7, 7], [8, 7], [8, 8], [7, 8]]},
                           {"image_id": 7, "footprint": [[20, 20], [21, 20], [21, 21]]}]}   # outside the grid
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(ann))
    grid = np.zeros((10, 10), np.int8)
    grid[3, 3] = 100                                     # inside footprint 1 (row = y, col = x)
    grid[7, 2] = 70                                      # marked, but in neither footprint
    occ = conv.occupancy_to_msg(grid, 1.0, np.zeros(2), 123, "base_link")
    assert isinstance(occ, OccupancyGrid)
    stamps = stamp_to_image_id(path)
    assert stamps == {123: 7}
    recall, n = occupancy_object_recall([occ], path, stamps, dilate_cells=0)
    assert (recall, n) == (0.5, 2)
    arr, _ = _arr()
    for inst in arr.instances:
        inst.amodal_mask = np.zeros((4, 4), bool)
        inst.amodal_mask[:2, :2] = True
        inst.visible_mask = inst.amodal_mask.copy()
    msg = conv.instance_array_to_msg(arr)
    preds = instance_array_to_predictions(msg, 7)
    assert [p["category_id"] for p in preds] == [3, 1, 2] and preds[1]["occluded_by"] == [0]
    assert M.decode(preds[0]["segmentation"], (4, 4)).sum() == 4 and preds[0]["depth_m"] == 5.0
    assert "depth_m" not in preds[2]                     # NaN depth is left out
    preds2, unknown = predictions_from_arrays([msg], {5_000_000_123: 7})
    assert len(preds2) == 3 and unknown == []
