"""RGB-D input without ROS: depth message checks and units, back-projection (hand-computed), the
simulated depth camera, the frame assembly of a depth frame, the depth fusion settings and
``generate --bag --depth``."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ros2_amodal_seg.errors import ConfigError, GeometryError, InvalidInputError
from ros2_amodal_seg.fusion.depth import PIXEL_NUDGE, DepthConfig, depth_pixel_ids, depth_to_points
from ros2_amodal_seg.runtime import inputs
from ros2_amodal_seg.runtime.inputs import InputGate, check_depth, depth_msg_to_metres
from ros2_amodal_seg.runtime.stats import EventCounters
from ros2_amodal_seg.world.depth_camera import EXACT, DepthNoiseConfig, depth_edges, simulate_depth

STAMP = 1_700_000_000_000_000_000
K = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])


def _msg(arr: np.ndarray, encoding: str, *, bigendian: bool = False, stamp_ns: int = STAMP, step=None, data=None):
    """A duck-typed sensor_msgs/Image holding ``arr`` (``[H, W]``)."""
    a = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">" if bigendian else "<"))
    header = SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                             frame_id="camera_optical_frame")
    return SimpleNamespace(header=header, height=a.shape[0], width=a.shape[1], encoding=encoding,
                           is_bigendian=int(bigendian), step=a.itemsize * a.shape[1] if step is None else step,
                           data=a.tobytes() if data is None else data)


# ------------------------------------------------------------------ units: 16UC1 millimetres, 32FC1 metres
@pytest.mark.parametrize("encoding,plane", [("16UC1", np.full((480, 640), 2000, np.uint16)),
                                            ("32FC1", np.full((480, 640), 2.0, np.float32))])
def test_a_plane_at_2_m_gives_points_at_z_2_in_either_encoding(encoding, plane):
    msg = _msg(plane, encoding)
    assert check_depth(msg) == inputs.Verdict()
    z = depth_msg_to_metres(msg)
    assert z.dtype == np.float32 and z.shape == (480, 640)
    pts = depth_to_points(z, K, stride=1)
    assert pts.shape == (480 * 640, 4) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[:, 2], 2.0, atol=1e-6)           # 2.000 m, not 2000 m or 2 mm
    assert not pts[:, 3].any()
    # pixel (row 240, col 420): x = (420 + 1/64 - 320) / 500 * 2 m, y = (240 + 1/64 - 240) / 400 * 2 m
    p = pts[240 * 640 + 420]
    assert p[0] == pytest.approx(0.4000625, abs=1e-6) and p[1] == pytest.approx(0.000078125, abs=1e-7)
    # corner pixel (0, 0): x = (0 + 1/64 - 320) / 500 * 2, y = (0 + 1/64 - 240) / 400 * 2
    assert pts[0, 0] == pytest.approx(-1.2799375, abs=1e-6) and pts[0, 1] == pytest.approx(-1.19992188, abs=1e-6)


def test_big_endian_and_padded_rows_decode_to_the_same_metres():
    mm = np.arange(12, dtype=np.uint16).reshape(3, 4) * 250          # 0, 0.25 m, ... 2.75 m
    ref = depth_msg_to_metres(_msg(mm, "16UC1"))
    np.testing.assert_allclose(ref, mm / 1000.0, atol=1e-7)
    np.testing.assert_array_equal(depth_msg_to_metres(_msg(mm, "16UC1", bigendian=True)), ref)
    padded = np.zeros((3, 6), np.uint16)
    padded[:, :4] = mm
    m = _msg(padded, "16UC1")
    m.width = 4                                                      # step 12 B > 4 * 2 B: padded rows
    np.testing.assert_array_equal(depth_msg_to_metres(m), ref)
    f = depth_msg_to_metres(_msg(np.float32(mm / 1000.0), "32FC1", bigendian=True))
    np.testing.assert_allclose(f, ref, atol=1e-7)


def test_zeros_nans_and_infs_are_no_return():
    z = np.full((4, 5), 1.5, np.float32)
    z[0, 0], z[1, 1], z[2, 2], z[3, 3], z[0, 4] = 0.0, np.nan, np.inf, -np.inf, -1.0
    pts = depth_to_points(z, K)
    assert len(pts) == 20 - 5 and np.all(pts[:, 2] == np.float32(1.5))
    ids = depth_pixel_ids(z, np.arange(20).reshape(4, 5))
    assert set(ids) == set(range(20)) - {0, 4, 6, 12, 18}          # pixel order kept, holes left out
    assert len(depth_to_points(z, K, min_depth_m=1.6)) == 0
    assert len(depth_to_points(z, K, max_depth_m=1.4)) == 0
    mm = np.zeros((2, 2), np.uint16)                                 # 16UC1: 0 = no return
    assert len(depth_to_points(depth_msg_to_metres(_msg(mm, "16UC1")), K)) == 0


def test_stride_keeps_every_nth_pixel():
    z = np.ones((6, 7), np.float32)
    pts = depth_to_points(z, K, stride=3)                            # rows 0, 3; cols 0, 3, 6
    assert len(pts) == 2 * 3
    np.testing.assert_allclose(pts[:3, 0], (np.array([0, 3, 6]) + PIXEL_NUDGE - 320) / 500, atol=1e-6)
    np.testing.assert_allclose(pts[3:, 1], (3 + PIXEL_NUDGE - 240) / 400, atol=1e-6)


def test_back_projection_lands_in_its_own_pixel_with_distortion():
    from ros2_amodal_seg.fusion.projection import project_lidar

    D = np.array([-0.28, 0.07, 0.001, -0.0005, 0.0])
    rng = np.random.default_rng(0)
    z = rng.uniform(0.5, 4.0, (48, 64)).astype(np.float32)
    Ks = np.array([[60.0, 0, 32.0], [0, 60.0, 24.0], [0, 0, 1]])
    pts = depth_to_points(z, Ks, 1, D)
    proj, _ = project_lidar(pts, Ks, D, np.eye(4), (48, 64))
    assert len(proj) == 48 * 64 and proj.in_image.all()
    rows, cols = np.divmod(np.arange(48 * 64), 64)
    np.testing.assert_array_equal(proj.pixel_rc[:, 0], rows[proj.index])
    np.testing.assert_array_equal(proj.pixel_rc[:, 1], cols[proj.index])
    np.testing.assert_allclose(proj.depth, z.ravel()[proj.index], rtol=1e-6)


def test_invalid_depth_arrays_and_settings_are_refused():
    with pytest.raises(InvalidInputError):
        depth_to_points(np.ones((4, 4), np.uint16), K)              # millimetres must be converted first
    with pytest.raises(InvalidInputError):
        depth_to_points(np.ones((4, 4, 1), np.float32), K)
    with pytest.raises(GeometryError):
        depth_to_points(np.ones((4, 4), np.float32), np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        DepthConfig(stride=0)
    with pytest.raises(ConfigError):
        DepthConfig(min_depth_m=5.0, max_depth_m=1.0)


# ------------------------------------------------------------------ receipt checks of depth images
def test_depth_receipt_check_refuses_by_kind_and_the_gate_counts():
    good = _msg(np.full((4, 6), 1000, np.uint16), "16UC1")
    cases = {"depth_encoding": dict(encoding="bgra8"), "depth_step": dict(step=6),
             "depth_truncated": dict(data=bytes(10)), "depth_size": dict(height=0)}
    counters, warned = EventCounters(inputs.counter_names()), []
    gate = InputGate(counters, lambda key, text: warned.append((key, text)))
    for kind, change in cases.items():
        m = _msg(np.full((4, 6), 1000, np.uint16), "16UC1")
        for k, v in change.items():
            setattr(m, k, v)
        v = check_depth(m)
        assert v.refused == kind and v.detail, kind
        assert gate.depth(m) is False and gate.last_refusal["depth"][0] == kind
    assert "bgra8" in check_depth(_msg(np.zeros((2, 2), np.uint16), "bgra8")).detail
    assert check_depth(_msg(np.zeros((2, 2), np.uint16), "16UC1", stamp_ns=-5)).refused == "depth_stamp"
    long = _msg(np.full((4, 6), 1000, np.uint16), "16UC1")
    long.data = long.data + b"\0\0"
    assert check_depth(long).notes == ("depth_data_long",) and gate.depth(long)
    assert gate.depth(good) and counters.get("bad_depth") == 4 and counters.get("depth_data_long") == 1
    assert {"bad_depth", "depth_encoding", "depth_data_long"} <= set(inputs.counter_names())


# ------------------------------------------------------------------ the simulated depth camera
def _scene(h: int = 40, w: int = 60):
    z = np.full((h, w), 2.0, np.float32)
    z[:, w // 2:] = 3.0                        # a depth step between columns w/2 - 1 and w/2
    z[:5, :] = np.inf                          # sky at the top
    rgb = np.full((h, w, 3), 200, np.uint8)
    rgb[30:, :10] = 5                          # a dark patch
    return z, rgb


def test_exact_depth_is_millimetres_and_out_of_range_is_zero():
    z, rgb = _scene()
    z[10, 10], z[11, 11] = 0.05, 12.0          # nearer than 0.1 m, farther than 10 m
    mm = simulate_depth(z, rgb, 0, EXACT)
    assert mm.dtype == np.uint16 and mm.shape == z.shape
    assert mm[20, 20] == 2000 and mm[20, 40] == 3000 and not mm[:5].any()
    assert mm[10, 10] == 0 and mm[11, 11] == 0
    z2 = np.full((2, 2), 1.2344, np.float32)
    assert simulate_depth(z2, np.full((2, 2, 3), 255, np.uint8), 0, EXACT)[0, 0] == 1234


def test_noise_grows_with_depth_and_is_deterministic_per_seed():
    z = np.full((200, 200), 2.0, np.float32)
    rgb = np.full((200, 200, 3), 255, np.uint8)
    cfg = DepthNoiseConfig(edge_drop_prob=0.0, random_drop_prob=0.0)
    a, b, c = (simulate_depth(z, rgb, s, cfg) for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    err = a.astype(np.float64) / 1000 - 2.0
    sigma = 0.001 * 2.0 + 0.002 * 2.0 ** 2                     # 10 mm at 2 m
    assert abs(err.mean()) < 0.3 * sigma and 0.8 * sigma < err.std() < 1.2 * sigma
    far = simulate_depth(np.full((200, 200), 8.0, np.float32), rgb, 7, cfg).astype(np.float64) / 1000 - 8.0
    assert far.std() > 10 * err.std()                          # 0.136 m at 8 m: grows with z squared


def test_edges_and_dark_surfaces_lose_their_returns():
    z, rgb = _scene()
    edge = depth_edges(z, 0.03)
    assert edge[20, 29] and edge[20, 30] and not edge[20, 25] and edge[5, 20] and not edge[6, 20]
    cfg = DepthNoiseConfig(noise_rel=0.0, noise_quad=0.0, edge_drop_prob=1.0, dark_drop_prob=1.0,
                           random_drop_prob=0.0)
    mm = simulate_depth(z, rgb, 3, cfg)
    assert not mm[5:, 29:31].any() and not mm[5, :].any()         # both sides of the step, the sky border
    assert not mm[30:, :10].any() and mm[30:, 12:28].all()       # the dark patch, not its bright neighbour
    assert mm[10:25, 5:25].all()                                  # away from edges and dark: all there


def test_noise_config_is_validated():
    with pytest.raises(ConfigError):
        DepthNoiseConfig(edge_drop_prob=1.5)
    with pytest.raises(ConfigError):
        DepthNoiseConfig(max_depth_m=100.0)                       # beyond what 16UC1 holds
    with pytest.raises(InvalidInputError):
        simulate_depth(np.ones((4, 4), np.float32), np.zeros((4, 5, 3), np.uint8), 0)


# ------------------------------------------------------------------ frame assembly of a depth frame
def test_the_assembler_back_projects_the_paired_depth_image_in_the_camera_frame():
    from ros2_amodal_seg.runtime.frames import FrameAssembler, GeometryConfig
    from ros2_amodal_seg.runtime.health import Health
    from ros2_amodal_seg.runtime.inputs import Intrinsics
    from ros2_amodal_seg.runtime.sync import ReadyFrame

    health = Health(inputs.counter_names(), lambda text: None)
    gate = InputGate(health.counters, health.warn)
    T_bc = np.eye(4)
    asm = FrameAssembler(health, gate, lambda cam, lid: (None, T_bc),
                         GeometryConfig(source="depth", depth=DepthConfig(stride=2)))
    rgb = np.zeros((48, 64, 3), np.uint8)
    img = SimpleNamespace(header=SimpleNamespace(frame_id="cam"), height=48, width=64, encoding="rgb8", step=192,
                          data=rgb.tobytes(), is_bigendian=0)
    img.header.stamp = SimpleNamespace(sec=1, nanosec=0)
    info = Intrinsics(K=np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]), D=np.zeros(5), height=48, width=64,
                      stamp_ns=10 ** 9)
    depth = _msg(np.full((48, 64), 1500, np.uint16), "16UC1")
    inp = asm(ReadyFrame(10 ** 9, img, 0.0, 10 ** 9, depth, 0, info))
    assert inp.points_lidar.shape == (24 * 32, 4) and np.all(inp.points_lidar[:, 2] == np.float32(1.5))
    np.testing.assert_array_equal(inp.T_camera_lidar, np.eye(4))   # no T_camera_lidar needed
    assert health.counters.get("no_extrinsics") == 0
    small = _msg(np.full((24, 32), 1500, np.uint16), "16UC1")       # not aligned to the colour image
    inp = asm(ReadyFrame(10 ** 9, img, 0.0, 10 ** 9, small, 0, info))
    assert inp.points_lidar is None and health.counters.get("depth_size_mismatch") == 1
    asm.extrinsics = lambda cam, lid: (None, None)
    asm(ReadyFrame(10 ** 9, img, 0.0, 10 ** 9, depth, 0, info))
    assert health.counters.get("no_extrinsics") == 1
    assert health.recent_mark("no_extrinsics", 10.0, __import__("time").monotonic()).startswith("T_base_camera")
    with pytest.raises(ConfigError):
        GeometryConfig(source="radar")


def test_depth_parameters_build_their_configs():
    from ros2_amodal_seg.fusion.pipeline import FusionConfig
    from ros2_amodal_seg.runtime import params as P

    values = {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default) for p in P.PARAMS}
    values.update({"geometry_source": "depth", "depth_stride": 4, "fusion_preset": "tabletop"})
    got = P.changed_configs(values, ["depth_stride", "fusion_preset"])
    assert got["geometry"].source == "depth" and got["geometry"].depth.stride == 4
    assert got["fusion"] == FusionConfig.for_preset("tabletop", source="depth").replace(bev={"frame_id": "base_link"})
    assert got["fusion"].instances.max_points == 2000
    assert P.sync_config(values).use_clouds and not P.sync_config({**values, "geometry_source": "none"}).use_clouds
    with pytest.raises(ConfigError):
        P.changed_configs({**values, "depth_min_m": 20.0}, ["depth_min_m"])   # min above max
    with pytest.raises(ConfigError):
        FusionConfig.for_preset("street", source="sonar")


def test_fusion_yaml_mirrors_the_depth_variants():
    from pathlib import Path

    from ros2_amodal_seg.fusion.pipeline import FusionConfig

    yml = Path(__file__).resolve().parents[1] / "config" / "fusion.yaml"
    for fam in ("street", "tabletop"):
        assert FusionConfig.from_yaml(yml, preset=f"{fam}_depth") == FusionConfig.for_preset(fam, source="depth")
        assert FusionConfig.for_preset(fam, source="depth") != FusionConfig.for_preset(fam)


# ------------------------------------------------------------------ generate --bag --depth
@pytest.mark.parametrize("preset", ["shapes-tabletop", "tabletop"])
def test_generate_writes_the_depth_topic_aligned_and_stamped_like_the_image(tmp_path, preset):
    from ros2_amodal_seg.data.bag import TOPIC_DEPTH, TOPIC_IMAGE, read_bag
    from ros2_amodal_seg.world import render_frame
    from ros2_amodal_seg.world.cli import generate

    generate(preset, 2, 40, tmp_path / "d", width=160, height=120, bag=True, depth=True, progress=False)
    msgs = list(read_bag(tmp_path / "d" / "bag", [TOPIC_DEPTH, TOPIC_IMAGE]))
    depth = [m.msg for m in msgs if m.topic == TOPIC_DEPTH]
    stamps = {m.topic: [] for m in msgs}
    for m in msgs:
        stamps[m.topic].append((m.msg.header.stamp.sec, m.msg.header.stamp.nanosec))
    assert len(depth) == 2 and stamps[TOPIC_DEPTH] == stamps[TOPIC_IMAGE]
    assert depth[0].encoding == "16UC1" and (depth[0].height, depth[0].width) == (120, 160)
    assert depth[0].header.frame_id == "camera_optical_frame"
    z = depth_msg_to_metres(depth[1])
    frame = render_frame(preset, 41, 160, 120, lidar=False, rig_seed=40)
    np.testing.assert_array_equal(z, simulate_depth(frame.depth, frame.rgb, 41).astype(np.float32) / np.float32(1000.0))
    ok = z > 0
    assert ok.mean() > 0.5
    err = np.abs(z[ok] - frame.depth[ok])
    assert np.median(err) < 0.02                                    # a few mm at 1-2 m


def test_generate_depth_needs_a_bag_and_32fc1_holds_metres(tmp_path):
    import argparse

    from ros2_amodal_seg.data.bag import TOPIC_DEPTH, read_bag
    from ros2_amodal_seg.world import cli

    ns = argparse.Namespace(preset="shapes-tabletop", num=1, seed=0, width=64, height=48, bench=False,
                            out=tmp_path / "x", bag=False, no_lidar=False, depth=True, workers=0)
    with pytest.raises(InvalidInputError):
        cli._validate(ns)
    cli._validate(argparse.Namespace(**{**vars(ns), "bag": True, "no_lidar": True}))   # an RGB-D-only bag is fine
    cli.generate("shapes-tabletop", 1, 3, tmp_path / "f", width=64, height=48, bag=True, depth=True, lidar=False,
                 depth_encoding="32FC1", progress=False)
    (m,) = [m.msg for m in read_bag(tmp_path / "f" / "bag", [TOPIC_DEPTH])]
    z = depth_msg_to_metres(m)
    assert m.encoding == "32FC1" and np.nanmax(z) < 10.0 and np.nanmin(z) > 0.1


def test_fusion_eval_cli_has_a_depth_camera_source(tmp_path, capsys):
    import json

    from ros2_amodal_seg.cli import main

    assert main(["fusion-eval", "--preset", "shapes-tabletop", "--seeds", "0:1", "--source", "depth",
                 "--json", str(tmp_path / "d.json"), "--png", str(tmp_path / "d.png")]) == 0
    s = json.loads((tmp_path / "d.json").read_text())
    assert s["source"] == "depth" and s["centroid_objects"] >= 3 and (tmp_path / "d_overview.png").exists()
    assert "source=depth" in capsys.readouterr().out
