"""FusionPipeline: the API the node codes against, config mirroring, bad input, CLI."""
from pathlib import Path

import numpy as np
import pytest

from ros2_amodal_seg.errors import ConfigError, GeometryError, InvalidInputError
from ros2_amodal_seg.fusion.bev import BevGrid
from ros2_amodal_seg.fusion.evaluate import instances_from_frame
from ros2_amodal_seg.fusion.pipeline import FusionConfig, FusionPipeline, FusionResult
from ros2_amodal_seg.types import BEV_LAYERS, AmodalInstanceArrayData, Instances2D, OcclusionGraphData

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frame():
    from ros2_amodal_seg.world import render_frame

    return render_frame("shapes-street", 3)


@pytest.fixture(scope="module")
def pipe():
    return FusionPipeline(config=FusionConfig.for_preset("street"))


def _run(pipe, frame, **over):
    inst, _ = instances_from_frame(frame)
    kw = dict(instances=inst, points_lidar=frame.lidar_points, K=frame.K, D=frame.D,
              T_camera_lidar=frame.T_camera_lidar, T_base_camera=frame.T_base_camera)
    kw.update(over)
    return pipe.run(kw.pop("instances"), kw.pop("points_lidar"), kw.pop("K"), kw.pop("D"), kw.pop("T_camera_lidar"),
                    kw.pop("T_base_camera"), **kw)


def test_result_contract(pipe, frame):
    res = _run(pipe, frame, stamp_ns=123, class_names={1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"})
    assert isinstance(res, FusionResult)
    n = len(frame.annotations)
    assert isinstance(res.instances, AmodalInstanceArrayData) and isinstance(res.graph, OcclusionGraphData)
    assert [i.id for i in res.instances.instances] == list(range(1, n + 1))
    assert res.instances.stamp_ns == 123 and res.instances.frame_id == "camera_optical_frame"
    assert sorted(res.graph.order) == list(range(1, n + 1))
    assert sorted(i.depth_rank for i in res.instances.instances) == list(range(n))
    for e in res.graph.edges:
        assert e.occluder_id in res.instances.instances[e.occludee_id - 1].occluded_by
        assert 0 <= e.confidence <= 1
    with_pts = [i for i in res.instances.instances if i.num_points > 0]
    assert with_pts, "expected LiDAR-supported instances"
    for i in with_pts:
        assert i.frame_id == "base_link" and np.isfinite(i.depth_m) and np.all(np.isfinite(i.centroid))
        assert i.footprint.ndim == 2 and i.footprint.shape[1] == 2 and len(i.footprint) >= 3
        assert np.all(i.box_size > 0) and abs(np.linalg.norm(i.box_orientation) - 1) < 1e-9
        assert i.class_name in {"box", "cylinder", "sphere", "cone", "torus"}
    assert tuple(res.bev.layers) == BEV_LAYERS and res.bev.frame_id == "base_link"
    assert res.occupancy.dtype == np.int8 and res.occupancy.shape == res.bev.shape == pipe.grid.shape
    assert set(np.unique(res.occupancy)) <= {-1, 0, 70, 100}
    assert res.instance_points.dtype == np.float32 and res.instance_points.shape[1] == 3
    assert res.instance_point_ids.dtype == np.int32 and len(res.instance_point_ids) == len(res.instance_points)
    assert sum(i.num_points for i in res.instances.instances) == len(res.instance_points)
    assert set(res.timings_ms) >= {"projection", "instances", "order", "bev"}
    assert isinstance(res.grid, BevGrid)
    # clean instance points are really on their object (the world labels every LiDAR return)
    ids = np.array([a.id for a in frame.annotations])
    proj_ok = 0
    for k, inst in enumerate(res.instances.instances):
        if inst.num_points:
            pts = res.instance_points[res.instance_point_ids == k + 1]
            c = frame.centers_base[list(frame.object_ids).index(ids[k])]
            proj_ok += np.median(np.linalg.norm(pts[:, :2] - c[:2], axis=1)) < 0.6 * np.max(frame.sizes) + 1
    assert proj_ok == len(with_pts)


def test_nan_points_are_dropped_with_a_warning(pipe, frame):
    pts = frame.lidar_points.copy()
    pts[::50, 0] = np.nan
    pts[1::50, 2] = np.inf
    res = _run(pipe, frame, points_lidar=pts)
    assert any("NaN/inf" in w for w in res.warnings)
    assert any(i.num_points > 0 for i in res.instances.instances)


def test_empty_none_and_behind_clouds_warn_and_fall_back_to_2d(pipe, frame):
    n = len(frame.annotations)
    behind = frame.lidar_points.copy()
    behind[:, 0] = -np.abs(behind[:, 0]) - 1.0          # lidar x is the viewing direction here
    for pts, msg in ((np.zeros((0, 4), np.float32), "unusable"), (None, "no LiDAR cloud"),
                     (behind, "front of the camera")):
        res = _run(pipe, frame, points_lidar=pts)
        assert any(msg in w for w in res.warnings), (msg, res.warnings)
        assert all(np.isnan(i.depth_m) and i.num_points == 0 for i in res.instances.instances)
        assert sorted(res.graph.order) == list(range(1, n + 1))          # order from masks alone
        assert len(res.instance_points) == 0 and res.occupancy.dtype == np.int8


def test_instance_without_hits_gets_nan_depth_and_mask_order(pipe, frame):
    inst, _ = instances_from_frame(frame)
    H, W = inst.image_size
    extra_a = np.zeros((1, H, W), bool)
    extra_a[0, 0:8, 0:8] = True                 # top-left corner of the sky: no LiDAR return
    extra_v = extra_a.copy()
    extra_v[0, 4:8, 4:8] = False                # hidden by instance N+2 there
    front = np.zeros((1, H, W), bool)
    front[0, 4:10, 4:10] = True
    inst2 = Instances2D(np.concatenate([inst.amodal_masks, extra_a, front]),
                        np.concatenate([inst.visible_masks, extra_v, front]),
                        np.r_[inst.class_ids, 1, 2], np.r_[inst.scores, 1, 1], np.r_[inst.occlusion_rates, 0, 0],
                        np.r_[inst.order_scores, 0, 0])
    res = _run(pipe, frame, instances=inst2)
    n = len(inst2)
    i_hidden = res.instances.instances[n - 2]
    assert np.isnan(i_hidden.depth_m) and i_hidden.num_points == 0
    assert any(f"instance {n - 1}: no LiDAR hits" in w for w in res.warnings)
    assert i_hidden.occluded_by == [n]
    assert res.graph.order.index(n) < res.graph.order.index(n - 1)


def test_bad_geometry_and_mask_size_raise_typed_errors(pipe, frame):
    K0 = frame.K.copy()
    K0[0, 0] = 0.0
    with pytest.raises(GeometryError, match="focal"):
        _run(pipe, frame, K=K0)
    T = frame.T_camera_lidar.copy()
    T[:3, :3] *= 1.5
    with pytest.raises(GeometryError, match="T_camera_lidar"):
        _run(pipe, frame, T_camera_lidar=T)
    with pytest.raises(GeometryError, match="T_base_camera"):
        _run(pipe, frame, T_base_camera=np.ones((4, 4)))
    inst, _ = instances_from_frame(frame)
    small = Instances2D(inst.amodal_masks[:, ::4, ::4], inst.visible_masks[:, ::4, ::4], inst.class_ids,
                        inst.scores, inst.occlusion_rates, inst.order_scores)
    with pytest.raises(InvalidInputError, match="principal point"):
        _run(pipe, frame, instances=small)
    with pytest.raises(InvalidInputError, match="masks are"):
        _run(pipe, frame, image_size=(240, 320))
    with pytest.raises(InvalidInputError):
        _run(pipe, frame, points_lidar=np.zeros((10, 2), np.float32))


def test_no_instances_still_builds_the_bev(pipe, frame):
    res = _run(pipe, frame, instances=Instances2D.empty(frame.height, frame.width))
    assert res.instances.instances == [] and res.graph.order == []
    assert (res.occupancy == 100).any() and (res.occupancy == 0).any()


def test_grid_frame_transform(frame):
    cfg = FusionConfig.for_preset("street").replace(bev={"frame_id": "odom"})
    T = np.eye(4)
    T[0, 3] = 5.0                                # odom = base_link shifted 5 m forward
    a = _run(FusionPipeline(config=FusionConfig.for_preset("street")), frame)
    b = _run(FusionPipeline(config=cfg), frame, T_grid_base=T)
    assert b.bev.frame_id == "odom"
    cols = int(round(5.0 / cfg.bev.resolution))
    np.testing.assert_array_equal(a.occupancy[:, :-cols] == 100, b.occupancy[:, cols:] == 100)


def test_yaml_mirrors_the_dataclass():
    import yaml

    assert FusionConfig.from_yaml(REPO / "config/fusion.yaml") == FusionConfig()
    raw = yaml.safe_load((REPO / "config/fusion.yaml").read_text())
    for sec, vals in FusionConfig().to_dict().items():        # every field is spelled out in the YAML
        assert (set(raw[sec]) == set(vals)) if isinstance(vals, dict) else raw[sec] == vals
    assert FusionConfig.from_yaml(REPO / "config/fusion.yaml", preset="tabletop") == FusionConfig.for_preset("tabletop")
    cfg = FusionConfig.from_dict({"bev": {"resolution": 0.1, "x_range": [0, 10]}})
    assert cfg.bev.resolution == 0.1 and cfg.bev.x_range == (0, 10)
    with pytest.raises(ConfigError):
        FusionConfig.from_dict({"bev": {"resolutoin": 0.1}})
    with pytest.raises(ConfigError):
        FusionConfig.from_dict({"nonsense": {}})
    with pytest.raises(ConfigError):
        FusionConfig.from_dict({"instances": {"outlier_method": "magic"}})


def test_cli_bench_and_eval_run(capsys, tmp_path):
    from ros2_amodal_seg.cli import main

    assert main(["fusion-bench", "--repeat", "2", "--warmup", "0", "--instances", "5"]) == 0
    out = capsys.readouterr().out
    assert "projection" in out and "bev" in out and "65536 points" in out
    assert main(["fusion-eval", "--preset", "shapes-tabletop", "--seeds", "0:1", "--json", str(tmp_path / "s.json"),
                 "--png", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "s.json").exists() and (tmp_path / "b.png").exists()


def test_alternative_methods_open3d_box_dbscan_ransac(frame):
    cfg = FusionConfig.for_preset("street").replace(
        instances={"box_mode": "open3d", "outlier_method": "dbscan"}, bev={"ground_method": "ransac"})
    res = _run(FusionPipeline(config=cfg), frame)
    ok = [i for i in res.instances.instances if i.num_points >= 20]
    assert ok and not any("RANSAC" in w for w in res.warnings)
    ref = _run(FusionPipeline(config=FusionConfig.for_preset("street")), frame)
    for i in ok:
        r = ref.instances.instances[i.id - 1]
        assert np.all(i.box_size > 0) and abs(np.linalg.norm(i.box_orientation) - 1) < 1e-6
        assert np.linalg.norm(i.centroid - r.centroid) < 0.1 * np.linalg.norm(r.centroid)
    # RANSAC ground and the height threshold agree on the flat synthetic ground
    agree = (res.occupancy == 100) == (ref.occupancy == 100)
    assert agree.mean() > 0.99
