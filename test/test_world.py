"""Ground-truth invariants of the version-1 world, presets shapes-tabletop / shapes-street
(shared/spec/world.md; the realistic presets are in test_world_v2.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ros2_amodal_seg.errors import ConfigError, InvalidInputError
from ros2_amodal_seg.world import render_frame
from ros2_amodal_seg.world.presets import PRESETS, get_preset, load_world_config
from ros2_amodal_seg.world.scene import (build_scene, camera_T_base, convex_hull_2d, lidar_T_camera,
                                         points_in_polygon, polygons_overlap)

SMALL = [(p, s) for p in ("shapes-tabletop", "shapes-street") for s in range(10)]


def _frame(preset, seed, w=160, h=120, cache={}):
    key = (preset, seed, w, h)
    if key not in cache:
        cache[key] = render_frame(preset, seed, w, h)
    return cache[key]


def _cast_alone(mesh, K, T_base_camera, us, vs):
    """Camera-z depth of one mesh alone at pixels (us, vs), inf where missed (independent ray set-up)."""
    import open3d as o3d

    d = np.stack([(us - K[0, 2]) / K[0, 0], (vs - K[1, 2]) / K[1, 1], np.ones_like(us, dtype=float)], -1)
    rays = np.concatenate([np.broadcast_to(T_base_camera[:3, 3], d.shape), d @ T_base_camera[:3, :3].T], 1)
    sc = o3d.t.geometry.RaycastingScene()
    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(mesh.vertices.astype(np.float32))
    tm.triangle.indices = o3d.core.Tensor(mesh.triangles.astype(np.int32))
    sc.add_triangles(tm)
    return sc.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()


# ---------------------------------------------------------------- hand-computed geometry

def test_camera_and_lidar_transforms_hand_computed():
    T = camera_T_base(1.5, 0.0)                        # level camera 1.5 m up
    # a point 10 m ahead at camera height lies on the optical axis
    p_cam = np.linalg.inv(T) @ np.array([10.0, 0.0, 1.5, 1.0])
    np.testing.assert_allclose(p_cam[:3], [0, 0, 10], atol=1e-12)
    # optical x (right) = base -y, optical y (down) = base -z, optical z = base x
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    T45 = camera_T_base(1.0, np.pi / 4)                # pitched 45 deg down: axis hits ground 1 m ahead
    p = np.linalg.inv(T45) @ np.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(p[:3], [0, 0, np.sqrt(2)], atol=1e-12)
    Tcl = lidar_T_camera(get_preset("shapes-street"))         # 0.3 m above, 0.2 m behind the camera
    np.testing.assert_allclose(Tcl @ [0, 0, 0, 1], [0, -0.3, -0.2, 1], atol=1e-12)
    np.testing.assert_allclose(Tcl @ [5, 0, 0, 1], [0, -0.3, 4.8, 1], atol=1e-12)   # lidar x = view axis
    np.testing.assert_allclose(Tcl @ [0, 1, 0, 1], [-1, -0.3, -0.2, 1], atol=1e-12)  # lidar y = left
    Tcl_t = lidar_T_camera(get_preset("shapes-tabletop"))
    np.testing.assert_allclose(Tcl_t[:3, 3], [0, -0.1, 0], atol=1e-12)


def test_polygon_helpers():
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    hull = convex_hull_2d(np.vstack([sq, [[0.5, 0.5]]]))
    assert len(hull) == 4
    area = 0.5 * np.sum(hull[:, 0] * np.roll(hull[:, 1], -1) - np.roll(hull[:, 0], -1) * hull[:, 1])
    assert area == pytest.approx(1.0)                   # CCW -> positive area
    assert polygons_overlap(sq, sq + [0.5, 0.5])
    assert not polygons_overlap(sq, sq + [1.0, 0.0])    # touching is not overlapping
    assert polygons_overlap(sq, sq + [1.1, 0.0], gap=0.2)
    inside = points_in_polygon(np.array([[0.5, 0.5], [1.05, 0.5], [2, 2]]), sq, tol=0.1)
    assert inside.tolist() == [True, True, False]


def test_world_yaml_mirrors_presets():
    from pathlib import Path

    cfgs = load_world_config(Path(__file__).resolve().parents[1] / "config" / "world.yaml")
    assert cfgs == PRESETS


# ---------------------------------------------------------------- invariants over many seeds

@pytest.mark.parametrize("preset,seed", SMALL)
def test_ground_truth_invariants(preset, seed):
    f = _frame(preset, seed)
    cfg = get_preset(preset)
    H, W = f.visible_ids.shape
    M = len(f.object_ids)
    assert cfg.num_objects[0] <= M <= cfg.num_objects[1]
    assert f.object_ids.tolist() == list(range(1, M + 1))
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.depth.dtype == np.float32 and f.visible_ids.dtype == np.int32
    assert f.amodal_masks.shape == (M, H, W) and f.amodal_masks.dtype == bool
    assert np.isinf(f.depth[f.visible_ids == 0]).sum() + np.isfinite(f.depth).sum() == H * W
    assert np.isfinite(f.depth[f.visible_ids > 0]).all()
    # sizes: largest extent within the preset range (placement may shrink, never below min)
    largest = f.sizes.max(1)
    assert (largest >= cfg.size_range[0] - 1e-9).all() and (largest <= cfg.size_range[1] + 1e-9).all()
    if preset == "shapes-street":
        assert ((f.centers_base[:, 0] >= 3 - 1e-9) & (f.centers_base[:, 0] <= 35 + 1e-9)).all()
        bearing = np.abs(np.arctan2(f.centers_base[:, 1], f.centers_base[:, 0]))
        assert (bearing < np.arctan(W / 2 / f.K[0, 0])).all()
    for k, iid in enumerate(f.object_ids):
        vis = f.visible_ids == iid
        assert not (vis & ~f.amodal_masks[k]).any(), "visible must be a subset of amodal"
        # resting on z = 0
        lo = f.centers_base[k, 2] - f.sizes[k, 2] / 2
        assert abs(lo) < 1e-9
    by_id = {a.id: a for a in f.annotations}
    for k, iid in enumerate(f.object_ids):
        vis_n = int((f.visible_ids == iid).sum())
        am_n = int(f.amodal_masks[k].sum())
        if vis_n < 16 or am_n == 0:
            assert iid not in by_id
            continue
        a = by_id[int(iid)]
        assert a.category_id == f.category_ids[k]
        np.testing.assert_array_equal(a.amodal, f.amodal_masks[k])
        np.testing.assert_array_equal(a.visible, f.visible_ids == iid)
        assert a.occlude_rate == pytest.approx(1 - vis_n / am_n)
        assert 0.0 <= a.occlude_rate <= 1.0
        expected = sorted(int(j) for j in np.unique(f.visible_ids[f.amodal_masks[k]])
                          if j not in (0, iid) and int(j) in by_id)
        assert sorted(a.occluded_by) == expected
        np.testing.assert_allclose(a.footprint, f.footprints[k])


@pytest.mark.parametrize("preset,seed", [("shapes-tabletop", 0), ("shapes-tabletop", 3), ("shapes-street", 1), ("shapes-street", 4)])
def test_occluders_are_nearer(preset, seed):
    f = _frame(preset, seed)
    spec = build_scene(preset, seed)
    checked = 0
    for a in f.annotations:
        k = a.id - 1
        for j in a.occluded_by:
            vs, us = np.nonzero(a.amodal & (f.visible_ids == j))
            assert len(vs) > 0
            z_alone = _cast_alone(spec.objects[k].mesh, f.K, f.T_base_camera, us.astype(float), vs.astype(float))
            assert np.isfinite(z_alone).all()
            assert (f.depth[vs, us] < z_alone + 1e-5).all(), f"occluder {j} not nearer than {a.id}"
            checked += 1
    assert checked > 0 or all(not a.occluded_by for a in f.annotations)


def test_some_scenes_have_occlusion():
    rates = [a.occlude_rate for p, s in SMALL for a in _frame(p, s).annotations]
    assert max(rates) > 0.3
    assert np.mean(np.array(rates) > 0.05) > 0.1


@pytest.mark.parametrize("preset,seed", [("shapes-tabletop", 1), ("shapes-tabletop", 5), ("shapes-street", 2), ("shapes-street", 7)])
def test_lidar_ids_agree_with_camera(preset, seed):
    f = _frame(preset, seed, 320, 240)
    cfg = get_preset(preset)
    pts = f.lidar_points
    assert pts.dtype == np.float32 and pts.shape[1] == 4 and len(pts) > 1000
    r = np.linalg.norm(pts[:, :3], axis=1)
    assert (r >= cfg.lidar_range[0] - 1e-4).all() and (r <= cfg.lidar_range[1] + 1e-4).all()
    assert ((pts[:, 3] >= 0) & (pts[:, 3] <= 1)).all()
    n_rays = cfg.lidar_beams * cfg.lidar_azimuth_steps
    assert len(pts) < n_rays
    pc = pts[:, :3].astype(np.float64) @ f.T_camera_lidar[:3, :3].T + f.T_camera_lidar[:3, 3]
    z = pc[:, 2]
    front = z > 0.05
    u = np.rint(f.K[0, 0] * pc[:, 0] / np.where(front, z, 1) + f.K[0, 2]).astype(int)
    v = np.rint(f.K[1, 1] * pc[:, 1] / np.where(front, z, 1) + f.K[1, 2]).astype(int)
    H, W = f.depth.shape
    inside = front & (u >= 1) & (u < W - 1) & (v >= 1) & (v < H - 1)
    idx = np.flatnonzero(inside)
    tol = 4 * cfg.lidar_range_noise + 0.01 * z[idx]
    seen = np.abs(f.depth[v[idx], u[idx]] - z[idx]) < tol      # the camera sees this surface point
    idx = idx[seen]
    assert len(idx) > 200
    pid = f.lidar_ids[idx]
    exact = f.visible_ids[v[idx], u[idx]] == pid
    nb = np.zeros(len(idx), dtype=bool)
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            nb |= f.visible_ids[v[idx] + dv, u[idx] + du] == pid
    assert nb.mean() > 0.995, f"only {nb.mean():.4f} of seen points agree within 1 px"
    assert exact.mean() > 0.97
    assert (pid > 0).sum() > 10


@pytest.mark.parametrize("preset,seed", [("shapes-tabletop", 2), ("shapes-tabletop", 6), ("shapes-street", 3), ("shapes-street", 8)])
def test_footprints_contain_lidar_hits(preset, seed):
    f = _frame(preset, seed)
    cfg = get_preset(preset)
    pb = f.lidar_points[:, :3].astype(np.float64) @ f.T_base_lidar[:3, :3].T + f.T_base_lidar[:3, 3]
    tol = 5 * cfg.lidar_range_noise + 1e-4
    n_obj_checked = 0
    for k, iid in enumerate(f.object_ids):
        sel = f.lidar_ids == iid
        if not sel.any():
            continue
        n_obj_checked += 1
        assert points_in_polygon(pb[sel, :2], f.footprints[k], tol=tol).all()
        assert (pb[sel, 2] > -tol).all() and (pb[sel, 2] < f.sizes[k, 2] + tol).all()
    assert n_obj_checked > 0


def test_full_size_frames():
    for preset, seed in (("shapes-tabletop", 11), ("shapes-street", 12)):
        f = render_frame(preset, seed)
        assert f.rgb.shape == (480, 640, 3)
        assert 450 <= f.K[0, 0] <= 650 and f.K[0, 0] == f.K[1, 1]
        assert abs(f.K[0, 2] - 319.5) <= 10 + 1e-9 and abs(f.K[1, 2] - 239.5) <= 10 + 1e-9
        np.testing.assert_array_equal(f.D, np.zeros(5))
        for a in f.annotations:
            assert not (a.visible & ~a.amodal).any()
        small = _frame(preset, seed)
        assert np.allclose(small.K[0, 0] * 4, f.K[0, 0])      # same scene at any size
        np.testing.assert_allclose(small.centers_base, f.centers_base)


def _frame_bytes(f):
    ann = [{"id": a.id, "c": a.category_id, "r": a.occlude_rate, "o": a.occluded_by,
            "fp": np.asarray(a.footprint).tolist()} for a in f.annotations]
    return f.rgb.tobytes(), f.lidar_points.tobytes(), f.lidar_ids.tobytes(), json.dumps(ann).encode(), \
        f.amodal_masks.tobytes()


def test_determinism():
    for preset in ("shapes-tabletop", "shapes-street"):
        a = render_frame(preset, 42, 160, 120)
        b = render_frame(preset, 42, 160, 120)
        assert _frame_bytes(a) == _frame_bytes(b)
        c = render_frame(preset, 43, 160, 120)
        assert a.rgb.tobytes() != c.rgb.tobytes()
        nl = render_frame(preset, 42, 160, 120, lidar=False)
        assert nl.rgb.tobytes() == a.rgb.tobytes() and nl.lidar_points.shape == (0, 4)


def test_bad_input():
    with pytest.raises(ConfigError, match="unknown preset"):
        render_frame("kitchen", 0)
    with pytest.raises(InvalidInputError, match="seed"):
        render_frame("shapes-street", -1)
    with pytest.raises(InvalidInputError, match="image size"):
        render_frame("shapes-street", 0, 4, 4)


def test_rig_seed_fixes_the_camera_only():
    a = render_frame("shapes-street", 30, 96, 72, rig_seed=5, lidar=False)
    b = render_frame("shapes-street", 31, 96, 72, rig_seed=5, lidar=False)
    c = render_frame("shapes-street", 31, 96, 72, lidar=False)
    np.testing.assert_array_equal(a.K, b.K)
    np.testing.assert_array_equal(a.T_base_camera, b.T_base_camera)
    assert not np.array_equal(a.centers_base, b.centers_base) or len(a.object_ids) != len(b.object_ids)
    assert not np.array_equal(b.K, c.K)
