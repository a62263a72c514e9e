"""scripts/eval_real.py's geometry: mmdet3d camera boxes -> corners -> the clipped 2-D amodal box,
against hand-computed cases (no data, no model)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "eval_real", Path(__file__).resolve().parent.parent / "scripts" / "eval_real.py")
eval_real = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(eval_real)

#: pinhole f = 100 px, principal point (50, 40), image 100 x 80 (W x H)
P = np.array([[100.0, 0, 50, 0], [0, 100.0, 40, 0], [0, 0, 1, 0]])
SIZE = (80, 100)


def test_corners_of_an_unrotated_box():
    # bottom centre (0, 1, 10), length 2 (x), height 1 (up = -y), width 4 (z)
    c = eval_real.box_corners_camera([0, 1, 10, 2, 1, 4, 0])
    assert c.shape == (8, 3)
    assert np.allclose(c.min(0), [-1, 0, 8]) and np.allclose(c.max(0), [1, 1, 12])
    assert np.allclose(c[:4, 1], 1) and np.allclose(c[4:, 1], 0)      # bottom face at y = 1, top at y = 0


def test_yaw_of_a_quarter_turn_swaps_length_and_width():
    c = eval_real.box_corners_camera([0, 1, 10, 2, 1, 4, np.pi / 2])
    assert np.allclose(c.min(0), [-2, 0, 9]) and np.allclose(c.max(0), [2, 1, 11])


def test_amodal_box_of_a_box_in_front_of_the_camera():
    # x in [-1, 1], y in [0, 1], z in [8, 12]: the extremes are at the near face (z = 8):
    # u = 50 + 100 * (+-1) / 8 = 37.5 .. 62.5, v = 40 + 100 * 1 / 8 = 52.5 (bottom), 40 (top, y = 0)
    c = eval_real.box_corners_camera([0, 1, 10, 2, 1, 4, 0])
    assert eval_real.amodal_box(c, P, SIZE) == pytest.approx([37.5, 40.0, 62.5, 52.5])
    # a [3, 3] intrinsic matrix gives the same
    assert eval_real.amodal_box(c, P[:, :3], SIZE) == pytest.approx([37.5, 40.0, 62.5, 52.5])


def test_amodal_box_is_clipped_to_the_image():
    # x in [4, 6] at z = 8..12: u = 50 + 100 * 4 / 12 = 83.3 .. beyond 100 -> clipped at the right edge
    c = eval_real.box_corners_camera([5, 1, 10, 2, 1, 4, 0])
    x0, y0, x1, y1 = eval_real.amodal_box(c, P, SIZE)
    assert x0 == pytest.approx(50 + 400 / 12) and x1 == 100.0 and y0 == 40.0 and y1 == pytest.approx(52.5)


def test_a_box_crossing_the_camera_plane_is_cut_at_the_near_depth():
    # z in [-1, 3]: the part behind z = 0.1 is cut; at z = 0.1 the corners x = +-1 project to
    # u = 50 -+ 1000 -> clipped to the whole image width; y = 1 projects below the image
    c = eval_real.box_corners_camera([0, 1, 1, 2, 1, 4, 0])
    assert eval_real.amodal_box(c, P, SIZE) == pytest.approx([0.0, 40.0, 100.0, 80.0])


def test_boxes_behind_the_camera_or_outside_the_image_give_none():
    assert eval_real.amodal_box(eval_real.box_corners_camera([0, 1, -10, 2, 1, 4, 0]), P, SIZE) is None
    assert eval_real.amodal_box(eval_real.box_corners_camera([50, 1, 10, 2, 1, 4, 0]), P, SIZE) is None


def test_box_iou_by_hand():
    assert eval_real._iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert eval_real._iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    assert eval_real._iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
