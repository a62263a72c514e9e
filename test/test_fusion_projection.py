"""Projection: hand-computed pinhole / plumb_bob cases, gates, cv2 agreement, bad input."""
import cv2
import numpy as np
import pytest

from ros2_amodal_seg.errors import EmptyInputError, GeometryError, InvalidInputError
from ros2_amodal_seg.fusion.projection import (ProjectionConfig, check_distortion, check_intrinsics, check_rigid,
                                               clean_points, distort_normalized, project_camera_points,
                                               project_lidar)

K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
I4 = np.eye(4)


def _proj(pts, D=None, size=(480, 640), cfg=ProjectionConfig()):
    return project_lidar(np.asarray(pts, np.float64), K, D, I4, size, cfg)


def test_point_on_optical_axis_hits_principal_point():
    p, w = _proj([[0.0, 0.0, 5.0]])
    assert w == []
    np.testing.assert_allclose(p.uv, [[320.0, 240.0]], atol=1e-9)
    np.testing.assert_allclose(p.depth, [5.0])
    assert p.in_image.tolist() == [True] and p.pixel_rc.tolist() == [[240, 320]]


def test_points_at_image_edges():
    z = 4.0
    px = lambda u, v: [(u - 320) / 500 * z, (v - 240) / 500 * z, z]   # noqa: E731  (inverse pinhole)
    pts = [px(0.25, 0.25),       # inside the top-left pixel
           px(639.75, 479.75),   # inside the bottom-right pixel
           px(640.25, 240.0),    # just past the right edge (the image is [0, W) x [0, H))
           px(-0.25, 240.0),     # just before the left edge
           px(319.5, 479.5)]     # centre of pixel (479, 319)
    p, _ = _proj(pts)
    np.testing.assert_allclose(p.uv, [[0.25, 0.25], [639.75, 479.75], [640.25, 240], [-0.25, 240], [319.5, 479.5]],
                               atol=1e-9)
    assert p.in_image.tolist() == [True, True, False, False, True]
    assert p.pixel_rc[[0, 1, 4]].tolist() == [[0, 0], [479, 639], [479, 319]]


def test_behind_camera_and_range_are_dropped_before_division():
    pts = [[0.0, 0.0, -3.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.01], [0.0, 0.0, 250.0], [0.5, 0.0, 2.0]]
    with np.errstate(all="raise"):            # a division by z = 0 would raise here
        p, _ = _proj(pts)
    assert p.index.tolist() == [4]
    np.testing.assert_allclose(p.uv, [[320 + 500 * 0.25, 240]])
    p2, w = _proj([[0.0, 0.0, -1.0]])
    assert len(p2) == 0 and any("front of the camera" in m for m in w)


def test_radial_and_tangential_distortion_hand_computed():
    # k1 = 0.1: x' = 0.5, y' = 0 -> r2 = 0.25, radial = 1.025, u = 500 * 0.5125 + 320
    p, _ = _proj([[0.5, 0.0, 1.0]], D=[0.1, 0, 0, 0, 0])
    np.testing.assert_allclose(p.uv, [[576.25, 240.0]], atol=1e-9)
    # p1 = 0.01, x' = 0.5, y' = 0.2: x'' = 0.5 + 2 * 0.01 * 0.1 = 0.502, y'' = 0.2 + 0.01 * (0.29 + 0.08) = 0.2037
    xd, yd = distort_normalized(np.array([0.5]), np.array([0.2]), np.array([0, 0, 0.01, 0, 0.0]))
    np.testing.assert_allclose([xd[0], yd[0]], [0.502, 0.2037], atol=1e-12)


def test_matches_cv2_project_points_with_distortion_and_rotation():
    rng = np.random.default_rng(0)
    D = np.array([-0.21, 0.05, 0.001, -0.002, 0.01])
    rvec = np.array([0.1, -0.2, 0.05])
    R, _ = cv2.Rodrigues(rvec)
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = [0.1, -0.2, 0.3]
    pts_cam = np.c_[rng.uniform(-2, 2, 500), rng.uniform(-1.5, 1.5, 500), rng.uniform(3, 20, 500)]
    pts_lidar = (pts_cam - T[:3, 3]) @ R                     # p_cam = R p_lidar + t
    p, _ = project_lidar(pts_lidar, K, D, T, (480, 640))
    assert len(p) == 500
    ref, _ = cv2.projectPoints(pts_lidar.reshape(-1, 1, 3), rvec, T[:3, 3], K, D)
    np.testing.assert_allclose(p.uv, ref.reshape(-1, 2)[p.index], atol=1e-6)


def test_strong_barrel_distortion_does_not_fold_back():
    D = [-0.5, 0, 0, 0, 0]       # r * (1 - 0.5 r^2) peaks at r = 0.816
    keep, uv, _ = project_camera_points(np.array([[0.3, 0.0, 1.0], [3.0, 0.0, 1.0]]), K, D)
    assert keep.tolist() == [0]


def test_nan_points_dropped_with_warning_and_index_kept():
    pts = np.array([[0, 0, 5, 1], [np.nan, 0, 5, 1], [0, np.inf, 5, 1], [0.5, 0, 5, 1]], np.float32)
    p, w = _proj(pts)
    assert p.index.tolist() == [0, 3] and len(w) == 1 and "NaN/inf" in w[0]
    with pytest.raises(EmptyInputError):
        clean_points(np.full((3, 3), np.nan))
    with pytest.raises(EmptyInputError):
        clean_points(np.zeros((0, 4), np.float32))
    with pytest.raises(InvalidInputError):
        clean_points(np.zeros((5, 2)))


def test_invalid_geometry_is_rejected():
    with pytest.raises(GeometryError, match="focal"):
        check_intrinsics(np.array([[0.0, 0, 320], [0, 500, 240], [0, 0, 1]]))
    with pytest.raises(GeometryError):
        check_intrinsics(np.eye(2))
    with pytest.raises(GeometryError, match="rigid"):
        check_rigid(np.diag([2.0, 1, 1, 1]))                       # scaling
    with pytest.raises(GeometryError, match="rigid"):
        check_rigid(np.diag([-1.0, 1, 1, 1]))                      # reflection
    bad = np.eye(4)
    bad[3, 0] = 0.5
    with pytest.raises(GeometryError, match="last row"):
        check_rigid(bad)
    with pytest.raises(GeometryError):
        check_rigid(np.eye(3))
    with pytest.raises(GeometryError):
        check_distortion([0.1, np.nan, 0, 0, 0])
    np.testing.assert_array_equal(check_distortion(None), np.zeros(5))
    np.testing.assert_array_equal(check_distortion([0.1, 0.2, 0, 0]), [0.1, 0.2, 0, 0, 0])
