"""ROS-free runtime core: sync cache, stats, overlay, processor, parameter checks."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ros2_amodal_seg.errors import ConfigError, GeometryError, InvalidInputError
from ros2_amodal_seg.runtime import overlay as ov
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.runtime import params as P
from ros2_amodal_seg.runtime.params import PARAMS, check_transform, check_value
from ros2_amodal_seg.runtime.processor import (FrameInput, FrameProcessor, ProcessorConfig,
                                               fusion_config_from_params)
from ros2_amodal_seg.runtime.stats import EventCounters, LatencyStats, RateMeter, Throttle, percentile
from ros2_amodal_seg.runtime.sync import FrameSync, SyncConfig
from sync_sim import simulate
from ros2_amodal_seg.types import AmodalInstanceArrayData, AmodalInstanceData, Instances2D

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


# ----------------------------------------------------------------------------- sync
def test_sync_pairs_nearest_cloud_within_tolerance():
    s = FrameSync(config=SyncConfig(tolerance_s=0.05, cloud_wait_s=0.5))
    for dt in (-100, -30, 10, 45, 200):
        s.add_cloud(T0 + dt * MS, f"c{dt}", now=0.0)
    s.add_image(T0, "img", now=0.0)
    f = s.poll(now=0.0)  # a cloud stamped after the image exists: decided at once
    assert f is not None and f.cloud == "c10" and f.cloud_dt_ns == 10 * MS and f.image == "img"
    assert s.poll(now=0.0) is None  # consumed
    assert (s.paired, s.unpaired) == (1, 0)


def test_sync_waits_for_a_later_cloud_then_gives_up_2d():
    s = FrameSync(config=SyncConfig(tolerance_s=0.05, cloud_wait_s=0.2))
    s.add_cloud(T0 - 80 * MS, "old", now=0.0)        # outside tolerance
    s.add_image(T0, "img", now=0.0)
    assert s.poll(now=0.1) is None                    # still waiting for a cloud after the image
    f = s.poll(now=0.25)                              # waited cloud_wait_s: 2-D only
    assert f is not None and f.cloud is None and f.cloud_stamp_ns is None
    assert s.unpaired == 1
    # a cloud arriving during the wait is used
    s.add_image(T0 + 100 * MS, "img2", now=0.5)
    assert s.poll(now=0.55) is None
    s.add_cloud(T0 + 120 * MS, "new", now=0.56)
    f = s.poll(now=0.56)
    assert f.cloud == "new" and f.cloud_dt_ns == 20 * MS


def test_sync_a_fast_camera_does_not_restart_an_older_images_wait():
    """The stall of issue #18: each new image used to restart the wait, so with no cloud
    stamped after the images nothing was ever released."""
    s = FrameSync(config=SyncConfig(tolerance_s=0.05, cloud_wait_s=0.2))
    s.add_cloud(T0 - 2 * MS, "c", now=0.0)            # stamped just before the first image
    for k in range(7):                                # 30 Hz images, none ready by a later cloud
        s.add_image(T0 + 33 * k * MS, k, now=0.033 * k)
        if 0.033 * k < 0.2:
            assert s.poll(now=0.033 * k) is None
    f = s.poll(now=0.2)                               # image 0 waited its own 0.2 s
    assert f is not None and f.image == 0 and f.cloud == "c"
    assert s.num_pending == 6 and s.drops["superseded"] == 0
    f = s.poll(now=0.4)                               # images 1..6 waited too: the newest ready wins
    assert f.image == 6 and s.drops["superseded"] == 5 and f.cloud is None   # 198 ms from the cloud


def test_sync_knows_the_lidar_period_and_releases_without_waiting_for_the_next_cloud():
    s = FrameSync(config=SyncConfig(tolerance_s=0.05, cloud_wait_s=0.5))
    for j in range(3):                                # 10 Hz, stamped 2 ms before the images
        s.add_cloud(T0 + (100 * j - 2) * MS, j, now=0.1 * j)
    assert s.cloud_period_ns == 100 * MS
    s.add_image(T0 + 200 * MS, "img", now=0.205)      # nearest: cloud 2 (2 ms); the next is >= 48 ms away
    f = s.poll(now=0.205)
    assert f is not None and f.cloud == 2 and f.cloud_dt_ns == -2 * MS
    s.add_image(T0 + 233 * MS, "img2", now=0.24)      # 35 ms after cloud 2, the next may be 15 ms away
    assert s.poll(now=0.24) is None
    s.add_cloud(T0 + 298 * MS, 3, now=0.3)
    f = s.poll(now=0.3)
    assert f.cloud == 2 and f.image == "img2"          # decided by the later cloud: 2 is still nearest


def test_sync_counts_superseded_and_stale_drops():
    s = FrameSync(config=SyncConfig(cloud_wait_s=0.0, max_frame_age_s=1.0, max_pending=3))
    for k in range(5):
        s.add_image(T0 + k * 100 * MS, k, now=0.01 * k)
    assert s.drops["superseded"] == 2 and s.num_pending == 3     # beyond max_pending
    f = s.poll(now=0.1)
    assert f.image == 4 and s.drops["superseded"] == 4            # the newest frame is processed
    s.add_image(T0 + 600 * MS, 5, now=1.0)
    assert s.poll(now=2.5) is None                    # 1.5 s old > max_frame_age_s
    assert s.drops["stale"] == 1
    assert sum(s.drops.values()) + s.unpaired + s.paired == 6   # every frame accounted for


def test_sync_time_jump_resets_caches():
    s = FrameSync(config=SyncConfig(time_jump_s=0.5, cloud_wait_s=1.0))
    s.add_cloud(T0 + 10 * MS, "c", now=0.0)
    s.add_image(T0 + 5_000 * MS, "late", now=0.0)     # pending (waits for a later cloud)
    assert s.add_cloud(T0 + 100 * MS, "c2", now=0.1) is False   # forward: no reset
    assert s.add_image(T0, "loop", now=0.2) is True   # 5 s backwards: bag looped
    assert s.drops["time_jump"] == 1                  # "late" was pending
    assert s.resets == 1 and s.num_clouds == 0 and s.num_pending == 1
    # small jitter backwards (< time_jump_s) does not reset
    s.add_cloud(T0 + 30 * MS, "c3", now=0.3)
    assert s.add_cloud(T0 + 20 * MS, "c4", now=0.3) is False and s.resets == 1


def test_sync_without_clouds_configured_images_do_not_wait():
    s = FrameSync(config=SyncConfig(cloud_wait_s=5.0, use_clouds=False))
    s.add_image(T0, 0, now=0.0)
    f = s.poll(now=0.0)                               # no LiDAR to wait for
    assert f is not None and f.image == 0 and f.cloud is None
    s = FrameSync(config=SyncConfig(cloud_wait_s=5.0))
    s.add_image(T0, 0, now=0.0)
    assert s.poll(now=4.9) is None                    # with a LiDAR: an image waits up to cloud_wait_s


def test_sync_wait_ready_blocks_until_cloud_arrives():
    s = FrameSync(config=SyncConfig(cloud_wait_s=2.0))
    s.add_image(T0, "img")
    threading.Timer(0.1, lambda: s.add_cloud(T0 + 20 * MS, "c")).start()
    t0 = time.monotonic()
    f = s.wait_ready(3.0)
    assert f is not None and f.cloud == "c" and time.monotonic() - t0 < 1.5


def _nearest(stamp: int, clouds: list[int], tol_ns: int) -> int | None:
    best = min(clouds, key=lambda c: (abs(c - stamp), c), default=None)
    return best if best is not None and abs(best - stamp) <= tol_ns else None


@pytest.mark.parametrize("offset_ms", [-2.0, 2.0, -20.0, 30.0])
@pytest.mark.parametrize("jitter_ms", [3.0, 15.0])
def test_sync_30_10_hz_never_starves_and_pairs_the_nearest_cloud_in_either_callback_order(offset_ms, jitter_ms):
    proc_s, duration = 0.22, 60.0
    runs = [simulate(offset_ms=offset_ms, jitter_ms=jitter_ms, cloud_first=cf, proc_s=proc_s, duration_s=duration)
            for cf in (True, False)]
    for r in runs:
        done = [o[0] for o in r.outputs]
        gaps = [b - a for a, b in zip(done, done[1:])]
        assert len(r.outputs) >= 0.9 * duration / proc_s          # >= 90 % of the closed-loop rate
        assert max(gaps) <= proc_s + 0.1                          # never a stall
        assert r.accounted() == len(r.images)                     # each image paired, 2-D or dropped
        tol = int(r.sync.config.tolerance_s * 1e9)
        for _, img, cloud in r.outputs[1:]:                       # the first may precede every cloud
            assert cloud == _nearest(img, r.clouds, tol)
    assert [o[1:] for o in runs[0].outputs] == [o[1:] for o in runs[1].outputs]


def test_sync_bag_loop_outputs_again_within_one_second():
    r = simulate(offset_ms=-2.0, duration_s=30.0, loop_at_s=15.0)
    assert r.sync.resets >= 1
    after = [done for done, img, _ in r.outputs if done > 15.0]
    assert after and after[0] - 15.0 < 1.0
    done = [o[0] for o in r.outputs]
    assert max(b - a for a, b in zip(done, done[1:])) < 1.0
    assert r.accounted() == len(r.images)


def test_sync_config_validation():
    with pytest.raises(ConfigError):
        SyncConfig(tolerance_s=-1)
    with pytest.raises(ConfigError):
        SyncConfig(cloud_cache_size=0)


# ----------------------------------------------------------------------------- stats
def test_latency_percentiles_hand_computed():
    st = LatencyStats(window=4)
    for v in (10, 20, 30, 40, 50):   # window keeps 20..50
        st.add("model", v)
    st.add("model", float("nan"))    # ignored
    s = st.summary()["model"]
    assert s["n"] == 4 and s["p50"] == pytest.approx(35.0) and s["p95"] == pytest.approx(48.5)
    assert s["max"] == 50 and s["mean"] == pytest.approx(35.0)
    assert np.isnan(percentile([], 50))


def test_rate_meter_and_counters_and_throttle():
    r = RateMeter(window_s=2.0)
    for k in range(11):
        r.tick(now=10.0 + 0.1 * k)     # 10 Hz for 1 s
    assert r.rate(now=11.0) == pytest.approx(10.0)
    assert r.rate(now=20.0) == 0.0 and r.total == 11 and r.since_last(now=12.0) == pytest.approx(1.0)
    c = EventCounters(("a",))
    c.inc("a")
    c.inc("b", 3)
    assert c.snapshot() == {"a": 1, "b": 3}
    t = Throttle(5.0)
    assert t.ready("k", 0.0) and not t.ready("k", 4.9) and t.ready("k", 5.0) and t.ready("other", 5.1)


# ----------------------------------------------------------------------------- overlay
def _square_instances(H=60, W=80):
    amodal = np.zeros((H, W), bool)
    amodal[10:40, 10:50] = True
    visible = amodal.copy()
    visible[:, 30:] = False
    inst = AmodalInstanceData(id=1, class_id=1, class_name="box", score=0.9, occlusion_rate=0.5,
                              amodal_mask=amodal, visible_mask=visible, depth_m=4.25)
    return AmodalInstanceArrayData(stamp_ns=1, frame_id="cam", image_height=H, image_width=W, instances=[inst])


def test_overlay_fills_visible_and_dashes_amodal_outline():
    arr = _square_instances()
    img = np.zeros((60, 80, 3), np.uint8)
    out = ov.render_overlay(img, arr, alpha=0.5, labels=False)
    col = np.array(ov.instance_color(1))
    assert np.allclose(out[25, 20], 0.5 * col, atol=1)         # visible interior blended at alpha 0.5
    assert (out[25, 40] == 0).all()                            # hidden interior stays unfilled
    # the amodal outline's right edge (column 49, hidden part) is dashed: some rows drawn, some not
    edge = (out[12:38, 48:51].sum(axis=(1, 2)) > 0)
    assert edge.any() and not edge.all()
    assert ov.instance_label("box", 0.9, 0.5, 4.25) == "box 0.90 | occ 50% | 4.2m"
    assert ov.instance_label("box", 0.9, 0.5, float("nan")).endswith("?m")
    with pytest.raises(InvalidInputError):
        ov.render_overlay(np.zeros((10, 10, 3), np.uint8), arr)


# ----------------------------------------------------------------------------- processor
class FakePredictor:
    """Deterministic predictor: one square object in front of another."""

    device = "cpu"
    class_names = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}

    def __init__(self):
        self.config = InferenceConfig()
        self.last_timings_ms = {"network": 1.0}
        self.closed = False

    def set_config(self, cfg):
        self.config = cfg

    def predict(self, rgb):
        H, W = rgb.shape[:2]
        a = np.zeros((2, H, W), bool)
        a[0, 20:60, 20:60] = True           # front object
        a[1, 30:70, 40:90] = True           # back object, partly hidden
        v = a.copy()
        v[1] &= ~a[0]
        return Instances2D(a, v, np.array([1, 2]), np.array([0.9, 0.8], np.float32),
                           np.array([0.0, 0.2], np.float32), np.array([0.1, 0.9], np.float32))

    def close(self):
        self.closed = True


def _processor():
    fp = FakePredictor()
    p = FrameProcessor(config=ProcessorConfig(), predictor_factory=lambda cfg: fp)
    p.load()
    return p, fp


def test_processor_2d_only_without_intrinsics():
    p, fp = _processor()
    out = p.process(FrameInput(image_rgb=np.zeros((100, 120, 3), np.uint8), stamp_ns=42))
    assert out.mode == "2d" and out.bev is None and out.occupancy is None
    assert out.instances.stamp_ns == 42 and out.graph.stamp_ns == 42
    a, b = out.instances.instances
    assert np.isnan(a.depth_m) and (a.depth_rank, b.depth_rank) == (0, 1)   # order from masks + model
    assert b.occluded_by == [1] and out.graph.order == [1, 2]
    assert out.timings_ms["model.network"] == 1.0
    p.set_inference_config(fp.config.replace(score_threshold=0.3, max_instances=7))
    assert (fp.config.score_threshold, fp.config.max_instances) == (0.3, 7) and p.inference_config is fp.config
    assert p.config.inference is fp.config                 # kept for the next load
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="final_nms_sigma"):
            p.set_inference_config(fp.config.replace(final_nms_sigma=bad))
    assert fp.config.final_nms_sigma == 2.0
    p.unload()
    assert fp.closed and not p.loaded


def test_processor_fuses_a_plane_of_points_at_known_depth():
    p, _ = _processor()
    K = np.array([[100.0, 0, 60], [0, 100.0, 50], [0, 0, 1]])
    # camera looks along base +x, 1 m above ground: optical z = base x, optical x = -base y, optical y = -base z
    T_bc = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.0], [0, 0, 0, 1]], float)
    # a dense wall of points at optical z = 5 m, in the camera frame (T_camera_lidar = identity)
    u, v = np.meshgrid(np.arange(0, 120, 1.0), np.arange(0, 100, 1.0))
    z = 5.0
    pts = np.stack([(u + 0.5 - 60) / 100 * z, (v + 0.5 - 50) / 100 * z, np.full_like(u, z),
                    np.ones_like(u)], -1).reshape(-1, 4).astype(np.float32)
    out = p.process(FrameInput(image_rgb=np.zeros((100, 120, 3), np.uint8), stamp_ns=7, K=K, D=np.zeros(5),
                               points_lidar=pts, T_camera_lidar=np.eye(4), T_base_camera=T_bc))
    assert out.mode == "fused" and out.bev is not None and out.occupancy.dtype == np.int8
    front = out.instances.instances[0]
    assert front.depth_m == pytest.approx(5.0, abs=0.05) and front.num_points > 0
    # base x = optical z: the centre lies at or behind the visible surface (5 m); base y = -optical x,
    # the mask's columns 20..59 span optical x in [-1.975, -0.025] m
    assert 4.95 <= front.centroid[0] <= 6.5 and 0.0 < front.centroid[1] < 2.0
    assert len(out.instance_points) == len(out.instance_point_ids) > 0
    assert {"model", "fusion", "process"} <= set(out.timings_ms)
    # without a cloud: fused geometry path, depth unknown
    out2 = p.process(FrameInput(image_rgb=np.zeros((100, 120, 3), np.uint8), stamp_ns=8, K=K, D=np.zeros(5),
                                T_camera_lidar=np.eye(4), T_base_camera=T_bc))
    assert out2.mode == "2d_fusion" and np.isnan(out2.instances.instances[0].depth_m)
    with pytest.raises(InvalidInputError):
        p.process(FrameInput(image_rgb=np.zeros((10, 10), np.uint8), stamp_ns=1))


def test_fusion_config_from_params():
    c = fusion_config_from_params("tabletop")
    assert c.bev.resolution == pytest.approx(0.01)
    c = fusion_config_from_params("street", x_range=(0, 10), y_range=(-5, 5), resolution=0.5, inferred_value=50)
    assert c.bev.x_range == (0.0, 10.0) and c.bev.resolution == 0.5 and c.bev.inferred_value == 50
    with pytest.raises(ConfigError):
        fusion_config_from_params("street", x_range=(10, 0))
    with pytest.raises(ConfigError):
        fusion_config_from_params("moon")


# ----------------------------------------------------------------------------- params
def test_param_checks():
    assert check_transform("T", [0.0] * 16) is None
    T = check_transform("T", np.eye(4).ravel())
    assert (T == np.eye(4)).all()
    with pytest.raises(GeometryError):
        check_transform("T", [1.0] * 15)
    bad = np.eye(4)
    bad[0, 0] = 2
    with pytest.raises(GeometryError):
        check_transform("T", bad.ravel())
    with pytest.raises(ConfigError):
        check_value("inference.score_threshold", 1.5)
    with pytest.raises(ConfigError):
        check_value("inference.complete_hidden", 1)
    with pytest.raises(ConfigError):
        check_value("inference.precision", "int8")
    with pytest.raises(ConfigError):
        check_value("device", "tpu")
    with pytest.raises(ConfigError):
        check_value("bev_x_range", [5.0, 1.0])
    for spec in PARAMS:            # every default passes its own check
        check_value(spec.name, list(spec.default) if isinstance(spec.default, tuple) else spec.default)


def test_parameter_groups_build_their_configs_and_refuse_bad_changes():
    values = {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default) for p in PARAMS}
    assert set(P.GROUPS) == {p.group for p in PARAMS}
    assert {n[len("inference."):] for n in P.names_in("inference")} == set(InferenceConfig().to_dict())
    got = P.changed_configs(values, ["sync_cloud_wait_s", "inference.max_instances", "base_frame"])
    assert set(got) == {"sync", "inference", "fusion"}       # base_frame: the fusion config's frame
    assert got["sync"] == SyncConfig() and got["inference"] == InferenceConfig()
    assert got["fusion"].base_frame == "base_link"
    values.update({"base_frame": "odom", "inference.score_threshold": 0.7, "max_cloud_points": 2000})
    got = P.changed_configs(values, ["base_frame", "inference.score_threshold", "max_cloud_points"])
    assert got["fusion"].base_frame == "odom" and got["fusion"].bev.frame_id == "odom"
    assert got["inference"].score_threshold == 0.7 and got["inputs"].max_cloud_points == 2000
    assert P.changed_configs(values, ["publish_overlay"]) == {}   # no config dataclass: the node's own
    for name, bad in (("sync_cloud_cache_size", 0), ("inference.final_nms_sigma", -1.0), ("bev_y_range", [3.0, 1.0]),
                      ("max_cloud_points", 5)):
        with pytest.raises((ConfigError, GeometryError)):
            P.changed_configs({**values, name: bad}, [name])

