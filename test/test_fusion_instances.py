"""Per-instance helpers: depth mode, centre estimate (hand-made circle / box), hulls, back-projection."""
import numpy as np
import pytest

from ros2_amodal_seg.fusion.instances3d import (backproject_pixels, backproject_to_ground, dominant_depth_mode,
                                                estimate_center, mask_boxes, mask_hull_pixels)
from ros2_amodal_seg.fusion.projection import project_camera_points

K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])


def test_dominant_depth_mode_prefers_the_near_cluster():
    rng = np.random.default_rng(0)
    d = np.r_[rng.normal(5.0, 0.02, 50), rng.normal(12.0, 0.02, 80)]       # object + background behind
    assert dominant_depth_mode(d, 0.2, near_ratio=0.5) == pytest.approx(5.0, abs=0.02)
    assert dominant_depth_mode(d, 0.2, near_ratio=1.0) == pytest.approx(12.0, abs=0.02)
    assert dominant_depth_mode(np.array([3.0]), 0.1) == 3.0


def _visible_circle(c, r, sensor, n=200):
    # points of the circle whose outward normal faces the sensor
    th = np.linspace(0, 2 * np.pi, 4 * n, endpoint=False)
    p = c + r * np.c_[np.cos(th), np.sin(th)]
    return p[np.einsum("ij,ij->i", p - c, sensor - p) > 0]


def test_center_of_a_round_object_from_its_visible_arc():
    c, sensor = np.array([10.0, 2.0]), np.zeros(2)
    pts = _visible_circle(c, 1.0, sensor)
    est = estimate_center(pts, top=1.4, sensor_xy=sensor)
    assert np.linalg.norm(est[:2] - c) < 0.02 and est[2] == pytest.approx(0.7)
    assert np.linalg.norm(pts.mean(axis=0) - c) > 0.5          # the plain mean is biased to the sensor


def test_center_of_a_yawed_box_from_its_two_visible_faces():
    c, sensor, yaw, (a, b) = np.array([8.0, -1.0]), np.zeros(2), np.deg2rad(30), (2.0, 1.2)
    R = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    corners = c + np.array([[a, b], [-a, b], [-a, -b], [a, -b]]) / 2 @ R.T
    pts = []
    for i in range(4):
        p0, p1 = corners[i], corners[(i + 1) % 4]
        mid, normal = (p0 + p1) / 2, (p0 + p1) / 2 - c
        if normal @ (sensor - mid) > 0:
            pts.append(p0 + np.linspace(0, 1, 60)[:, None] * (p1 - p0))
    pts = np.concatenate(pts)
    est = estimate_center(pts, top=1.0, sensor_xy=sensor, perspective_gain=0.0)
    assert np.linalg.norm(est[:2] - c) < 0.1                   # 1.2 % of the range (rim band bias)
    assert np.linalg.norm(pts.mean(axis=0) - c) > 0.3


def test_occluded_side_is_completed_with_the_amodal_extent():
    c, sensor = np.array([10.0, 0.0]), np.zeros(2)
    pts = _visible_circle(c, 1.0, sensor)
    half = pts[pts[:, 1] < 0.0]                      # left half hidden by an occluder
    amodal = np.array([[9.0, 1.0], [9.0, -1.0]])    # the amodal mask still spans the full width
    est = estimate_center(half, top=1.0, sensor_xy=sensor, amodal_xy=amodal)
    no_amodal = estimate_center(half, top=1.0, sensor_xy=sensor)
    assert abs(est[1] - c[1]) < 0.1 and abs(no_amodal[1] - c[1]) > 0.3


def test_mask_hull_and_boxes():
    m = np.zeros((10, 12), bool)
    m[3, 4] = True
    hull = mask_hull_pixels(m)
    assert sorted(map(tuple, hull.tolist())) == [(4, 3), (4, 4), (5, 3), (5, 4)]   # (u, v) pixel corners
    crop_hull = mask_hull_pixels(m[2:6, 3:8], offset=(2, 3))
    assert sorted(map(tuple, crop_hull.tolist())) == sorted(map(tuple, hull.tolist()))
    assert len(mask_hull_pixels(np.zeros((4, 4), bool))) == 0
    masks = np.zeros((2, 10, 12), bool)
    masks[0, 2:5, 3:9] = True
    assert mask_boxes(masks).tolist() == [[2, 5, 3, 9], [0, 0, 0, 0]]


def test_backprojection_inverts_projection_and_ground_range():
    uv = np.array([[100.0, 50.0], [320.0, 240.0], [600.0, 400.0]])
    D = np.array([-0.1, 0.01, 0.001, 0.0, 0.0])
    p = backproject_pixels(uv, 7.0, K, D)
    assert np.allclose(p[:, 2], 7.0)
    _, uv2, _ = project_camera_points(p, K, D)
    np.testing.assert_allclose(uv2, uv, atol=1e-3)
    # camera 1.5 m above ground looking along base x: optical z = base x
    T = np.eye(4)
    T[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    T[:3, 3] = [0.0, 0.0, 1.5]
    g = backproject_to_ground(uv, 7.0, 5.0, K, np.zeros(5), T, mode="range")
    np.testing.assert_allclose(np.hypot(g[:, 0], g[:, 1]), 5.0)
    g2 = backproject_to_ground(uv, 7.0, 5.0, K, np.zeros(5), T, mode="depth")
    np.testing.assert_allclose(g2[:, 0], 7.0)
