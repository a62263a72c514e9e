"""Receipt checks of the node's input messages (runtime.inputs), message by message."""
from __future__ import annotations

import numpy as np
import pytest

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.ros import conversions as conv
from ros2_amodal_seg.ros.malformed import CASES, GoodFrame, HUGE_CLOUD_POINTS
from ros2_amodal_seg.runtime import inputs
from ros2_amodal_seg.runtime.inputs import InputGate, InputLimits, check_camera_info, check_cloud, check_image
from ros2_amodal_seg.runtime.stats import EventCounters

STAMP = 1_700_000_000_000_000_000
RECEIPT_KINDS = {k for kinds in inputs.REFUSALS.values() for k in kinds}


@pytest.fixture(scope="module")
def good():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    pts = np.concatenate([rng.uniform(-5, 5, (500, 3)), rng.uniform(0, 1, (500, 1))], axis=1).astype(np.float32)
    return GoodFrame(rgb=rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), K=K, D=np.zeros(5), points=pts)


def _check(topic: str, msg):
    return {"image": check_image, "camera_info": check_camera_info, "cloud": check_cloud}[topic](msg)


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "cloud_2m_points"], ids=lambda c: c.name)
def test_every_case_gets_the_verdict_it_names(case, good):
    v = _check(case.topic, case.make(good, STAMP))
    if case.counter in RECEIPT_KINDS:
        assert v.refused == case.counter and v.detail
    elif case.counter in inputs.NOTES:
        assert v.ok and v.notes == (case.counter,)
    else:                                      # valid at receipt (counted later, or not at all)
        assert v.ok and v.notes == ()


def test_the_good_frame_passes_and_its_intrinsics_come_back(good):
    assert check_image(good.image(STAMP)) == inputs.Verdict()
    assert check_cloud(good.cloud(STAMP)) == inputs.Verdict()
    v = check_camera_info(good.info(STAMP))
    assert v.ok and not v.notes
    np.testing.assert_array_equal(v.value.K, good.K)
    assert (v.value.height, v.value.width, v.value.stamp_ns) == (240, 320, STAMP)


def test_a_huge_cloud_is_refused_from_its_header_alone(good):
    m = good.cloud(STAMP)
    m.width, m.row_step, m.data = HUGE_CLOUD_POINTS, 16 * HUGE_CLOUD_POINTS, b""   # no 32 MB needed
    assert check_cloud(m).refused == "cloud_too_large"
    assert check_cloud(m, InputLimits(max_cloud_points=HUGE_CLOUD_POINTS)).refused == "cloud_truncated"


def test_principal_point_and_distortion_bounds_by_hand(good):
    def info(cx=160.0, D=(0.0,) * 5, model="plumb_bob"):
        K = good.K.copy()
        K[0, 2] = cx
        m = conv.KD_to_camera_info(K, np.zeros(5), (240, 320), STAMP, "cam")
        m.d, m.distortion_model = [float(d) for d in D], model
        return check_camera_info(m)

    assert info(cx=640.0).ok and info(cx=-320.0).ok          # one image width outside, either side
    assert info(cx=640.5).refused == info(cx=-320.5).refused == "camera_info_k"
    assert info(D=(0.1, -0.2, 0.0, 0.0)).notes == ("camera_info_d_padded",)
    np.testing.assert_array_equal(info(D=(0.1, -0.2, 0.0, 0.0)).value.D, [0.1, -0.2, 0, 0, 0])
    assert info(D=(0.1, -0.2, 0.001, 0.002, 0.3, 0.0, 0.0, 0.0), model="rational_polynomial").ok
    assert info(D=(0.1, 0.0, 0.0), model="plumb_bob").refused == "camera_info_d"
    assert info(D=(0.0, 0.0, 0.0, 0.0), model="equidistant").ok   # all zero: no distortion in any model


def test_image_data_longer_than_declared_is_read_up_to_step_times_height(good):
    m = good.image(STAMP)
    m.data = bytes(m.data) + b"\xff" * 77
    assert check_image(m).notes == ("image_data_long",)
    np.testing.assert_array_equal(conv.image_msg_to_rgb(m), good.rgb)


def test_cloud_declaring_fewer_points_than_its_data_reads_the_declared_ones(good):
    m = good.cloud(STAMP)
    m.width, m.row_step = 10, 160
    assert check_cloud(m).notes == ("cloud_data_long",)
    pts, dropped = conv.pointcloud2_to_xyzi(m)
    np.testing.assert_array_equal(pts, good.points[:10])
    assert dropped == 0


def test_gate_counts_by_kind_warns_and_keeps_the_last_good_intrinsics(good):
    counters, warned = EventCounters(inputs.counter_names()), []
    gate = InputGate(counters, lambda key, text: warned.append((key, text)))
    assert gate.camera_info(good.info(STAMP)) is not None and not gate.last_info_bad
    bad = good.info(STAMP)
    bad.k = [0.0] * 9
    assert gate.camera_info(bad) is None and gate.last_info_bad
    assert counters.get("bad_camera_info") == counters.get("camera_info_k") == 1
    assert warned[-1][0] == "camera_info_k" and "camera_info_k" in warned[-1][1]
    img = good.image(STAMP)
    img.encoding = "bayer_rggb8"
    assert gate.image(img) is False and counters.get("image_encoding") == 1
    long_img = good.image(STAMP)
    long_img.data = bytes(long_img.data) + b"0"
    assert gate.image(long_img) is True and counters.get("image_data_long") == 1
    assert counters.get("bad_image") == 1
    gate.refuse("image", "image_decode", "not a JPEG")
    assert counters.get("bad_image") == 2 and counters.get("image_decode") == 1
    assert set(counters.snapshot()) >= set(inputs.counter_names())


def test_limits_validation():
    with pytest.raises(ConfigError):
        InputLimits(max_cloud_points=0)
    with pytest.raises(ConfigError):
        InputLimits(min_image_side=0)
