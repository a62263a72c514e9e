"""No silent failure: the diagnosis rules (ROS-free), ``amodal-seg doctor`` against publishers that
provoke each cause (the doctor as its own process, loopback DDS), and the node's own
``/diagnostics`` saying the same.

Causes provoked: no publisher; incompatible QoS (reliable subscription vs best-effort publisher);
unsupported encodings (bgra8 image, 8UC1 depth image); no CameraInfo; clouds stamped outside the
sync tolerance (a LiDAR clock 2 s behind the camera's: the measured offset is reported); no
transform (extrinsics parameters unset). A healthy run finds nothing. Last, the node with a depth
camera as its 3-D source counts depth images of the wrong size or encoding and goes on.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ros2_amodal_seg.runtime import doctor as D
from ros2_amodal_seg.runtime.sync import FrameSync, SyncConfig

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
KS = np.array([[80.0, 0, 32.0], [0, 80.0, 24.0], [0, 0, 1]])   # 64 x 48 test camera
EYE16 = [float(v) for v in np.eye(4).ravel()]


# ------------------------------------------------------------------ the rules, without ROS
def _topic(key="image", topic="/camera/image_raw", **kw):
    return D.TopicObservation(key=key, topic=topic, expected_type="sensor_msgs/msg/Image", **kw)


def _causes(obs):
    return [(f.cause, f.topic) for f in D.diagnose(obs)]


def test_rules_name_each_cause():
    ok = dict(received=10, seconds_since_received=0.1, seconds_since_accepted=0.1)
    be = D.Endpoint("/cam_driver", "sensor_msgs/msg/Image", "best_effort", "volatile")
    cases = {
        "healthy": (_topic(**ok), []),
        "no_publisher": (_topic(publishers=(), candidates=("/camera/image_raw", "/front/image")),
                         [("no_publisher", "/camera/image_raw")]),
        "qos": (_topic(publishers=(be,), qos=D.QosSpec("reliable")), [("qos_incompatible", "/camera/image_raw")]),
        "type": (_topic(publishers=(D.Endpoint("/x", "std_msgs/msg/String", "reliable", "volatile"),)),
                 [("type_mismatch", "/camera/image_raw")]),
        "silent": (_topic(publishers=(be,)), [("silent_publisher", "/camera/image_raw")]),
        "encoding": (_topic(received=5, seconds_since_received=0.2, last_refusal=("image_encoding", "bgra8")),
                     [("unsupported_encoding", "/camera/image_raw")]),
        "bad": (_topic(received=5, seconds_since_received=0.2, last_refusal=("image_truncated", "short")),
                [("bad_input", "/camera/image_raw")]),
        "info": (_topic("camera_info", "/camera/camera_info", publishers=()),
                 [("no_camera_info", "/camera/camera_info")]),
        "info_refused": (_topic("camera_info", "/camera/camera_info", received=3, seconds_since_received=0.5,
                                last_refusal=("camera_info_k", "fx 0")), [("no_camera_info", "/camera/camera_info")]),
    }
    for name, (t, want) in cases.items():
        assert _causes(D.Observations(topics=(t,), timeout_s=3.0)) == want, name
    f = D.diagnose(D.Observations(topics=(cases["no_publisher"][0],), timeout_s=3.0))[0]
    assert "/front/image" in f.hint                                  # the likely remap is suggested
    f = D.diagnose(D.Observations(topics=(cases["qos"][0],), timeout_s=3.0))[0]
    assert "/cam_driver" in f.message and "RELIABILITY" in f.message
    # a reliable publisher matches a best-effort subscription; transient-local needs transient-local
    assert D.qos_mismatch(D.Endpoint("/a", "t", "reliable", "volatile"), D.QosSpec("best_effort")) == []
    assert D.qos_mismatch(be, D.QosSpec("best_effort", "transient_local"))[0].startswith("DURABILITY")


def test_rules_sync_offset_and_missing_transform():
    img = _topic(received=10, seconds_since_received=0.1, seconds_since_accepted=0.1)
    cloud = D.TopicObservation("cloud", "/lidar/points", "sensor_msgs/msg/PointCloud2", 10, 0.1, 0.1)
    obs = D.Observations(topics=(img, cloud), timeout_s=3.0, sync_tolerance_s=0.05, paired=0,
                         missed_offsets_ns=(290 * MS, 300 * MS, 310 * MS), missing_transforms="T_base_camera (cam)")
    fs = D.diagnose(obs)
    assert [(f.cause, f.topic) for f in fs] == [("sync_offset", "/lidar/points"), ("no_transform", "")]
    assert "+300 ms" in fs[0].message and "0.3" in fs[0].hint and "T_base_camera" in fs[1].message
    assert D.summary(fs) == "sync_offset /lidar/points; no_transform"
    # mostly paired: a few misses are not a diagnosis; no clouds at all is the cloud topic's finding
    assert _causes(D.Observations((img, cloud), 3.0, paired=20, missed_offsets_ns=(300 * MS,))) == []
    assert D.summary([]) == "ok"


def test_sync_records_the_offset_an_unpaired_frame_missed_by():
    s = FrameSync(config=SyncConfig(tolerance_s=0.05, cloud_wait_s=0.0))
    for k in range(3):
        s.add_cloud(T0 + k * 100 * MS + 300 * MS, "c", now=float(k))
        s.add_image(T0 + k * 100 * MS, "i", now=float(k))
        f = s.poll(now=float(k) + 0.01)
        assert f.cloud is None and f.nearest_dt_ns in (300 * MS, 200 * MS, 100 * MS)
    st = s.recent_pairing(10.0, now=3.0)
    assert st.paired == 0 and len(st.missed_offsets_ns) == 3 and st.no_cloud == 0
    s.add_image(T0 + 380 * MS, "i", now=3.5)                          # 20 ms from the last cloud: paired
    assert s.poll(now=3.6).cloud == "c" and s.recent_pairing(10.0, now=3.7).paired == 1
    assert s.recent_pairing(0.5, now=3.7).missed_offsets_ns == ()    # the window ages the misses out


# ------------------------------------------------------------------ amodal-seg doctor against provoked causes
class Publishers:
    """Sensor publishers in this process (own rclpy context on ``domain``), publishing 64 x 48 frames at
    10 Hz on a thread: what each scenario provokes is set by the arguments."""

    def __init__(self, mp, domain: int, *, image=True, info=True, cloud=True, depth=False, image_encoding="rgb8",
                 depth_encoding="16UC1", cloud_dt_ns=10 * MS, image_reliable=False, others_reliable=False) -> None:
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from ros2_amodal_seg.ros import conversions as conv
        from ros2_amodal_seg.ros.rosenv import ROS_ENV_KEYS, loopback_ros_env

        env = loopback_ros_env(domain)
        for k in ROS_ENV_KEYS:
            mp.setenv(k, env[k])
        self.env = env
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("test_sensors", context=self.ctx)
        q = {r: QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if r else ReliabilityPolicy.BEST_EFFORT)
             for r in (False, True)}
        self.pubs = {}
        if image:
            self.pubs["image"] = self.node.create_publisher(Image, "/camera/image_raw", q[image_reliable])
        if info:
            self.pubs["info"] = self.node.create_publisher(CameraInfo, "/camera/camera_info", q[others_reliable])
        if cloud:
            self.pubs["cloud"] = self.node.create_publisher(PointCloud2, "/lidar/points", q[others_reliable])
        if depth:
            self.pubs["depth"] = self.node.create_publisher(Image, "/camera/depth/image_raw", q[others_reliable])
        self.conv, self.Image = conv, Image
        self.image_encoding, self.depth_encoding, self.cloud_dt_ns = image_encoding, depth_encoding, cloud_dt_ns
        self.rgb = np.full((48, 64, 3), 120, np.uint8)
        self.pts = np.c_[np.random.default_rng(0).uniform(-1, 1, (200, 2)), np.full(200, 2.0), np.ones(200)]
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)
        self._th.start()

    def _image(self, stamp: int, encoding: str, depth: bool):
        conv = self.conv
        if encoding == "rgb8":
            return conv.rgb_to_image_msg(self.rgb, stamp, "camera_optical_frame")
        nbytes = {"bgra8": 4, "8UC1": 1, "16UC1": 2}[encoding]
        m = self.Image(height=48, width=64, encoding=encoding, step=64 * nbytes,
                       data=(np.full(48 * 64, 1500, "<u2").tobytes() if encoding == "16UC1" else bytes(48 * 64 * nbytes)))
        m.header = conv.make_header(stamp, "camera_optical_frame")
        return m

    def _loop(self) -> None:
        k = 0
        while not self._stop.is_set():
            stamp = T0 + k * 100 * MS
            p, conv = self.pubs, self.conv
            if "info" in p:
                p["info"].publish(conv.KD_to_camera_info(KS, np.zeros(5), (48, 64), stamp, "camera_optical_frame"))
            if "image" in p:
                p["image"].publish(self._image(stamp, self.image_encoding, False))
            if "cloud" in p:
                p["cloud"].publish(conv.xyzi_to_pointcloud2(self.pts.astype(np.float32), stamp + self.cloud_dt_ns,
                                                            "lidar"))
            if "depth" in p:
                p["depth"].publish(self._image(stamp, self.depth_encoding, True))
            k += 1
            self._stop.wait(0.1)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._th.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def _doctor(env, tmp_path, *args, duration: float = 2.5) -> tuple[int, dict, str]:
    out = tmp_path / f"doctor_{abs(hash(args))}.json"
    proc = subprocess.run([sys.executable, "-m", "ros2_amodal_seg.cli", "doctor", "--duration", str(duration),
                           "--discovery", "1", "--json", str(out), *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert out.exists(), proc.stdout + proc.stderr
    return proc.returncode, json.loads(out.read_text()), proc.stdout


def _found(report: dict) -> set[tuple[str, str]]:
    return {(f["cause"], f["topic"]) for f in report["findings"]}


TRANSFORMS = ("-p", f"T_camera_lidar:={EYE16}", "-p", f"T_base_camera:={EYE16}")

@pytest.mark.ros
def test_doctor_finds_nothing_wrong_with_healthy_inputs(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        pubs = Publishers(mp, 73)
        try:
            rc, rep, out = _doctor(pubs.env, tmp_path, *TRANSFORMS)
        finally:
            pubs.close()
    assert rc == 0 and rep["findings"] == [], out
    assert all(t["accepted"] for t in rep["topics"].values()) and rep["frames"] >= 3
    assert "no problem found" in out


@pytest.mark.ros
def test_doctor_plays_a_bag_and_finds_what_it_lacks(tmp_path):
    from ros2_amodal_seg.ros.rosenv import loopback_ros_env
    from ros2_amodal_seg.world.cli import generate

    generate("shapes-tabletop", 4, 5, tmp_path / "d", width=64, height=48, bag=True, depth=True, lidar=False,
             progress=False)                                          # an RGB-D bag without LiDAR
    rc, rep, out = _doctor(loopback_ros_env(73), tmp_path, "--bag", str(tmp_path / "d" / "bag"), *TRANSFORMS)
    assert rc == 1 and _found(rep) == {("no_publisher", "/lidar/points")}, out   # the node's default source
    assert rep["topics"]["image"]["accepted"] and rep["topics"]["camera_info"]["accepted"] and rep["frames"] >= 3


@pytest.mark.ros
def test_doctor_names_no_publisher_and_no_camera_info(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        pubs = Publishers(mp, 74, info=False, cloud=False)
        try:
            rc, rep, out = _doctor(pubs.env, tmp_path, *TRANSFORMS)
        finally:
            pubs.close()
    assert rc == 1
    assert _found(rep) == {("no_publisher", "/lidar/points"), ("no_camera_info", "/camera/camera_info")}, out
    assert "no publisher on /lidar/points" in out


@pytest.mark.ros
def test_doctor_names_the_incompatible_qos_publisher(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        pubs = Publishers(mp, 75, image_reliable=False, others_reliable=True)
        try:
            rc, rep, out = _doctor(pubs.env, tmp_path, "-p", "qos_reliability:=reliable", *TRANSFORMS)
        finally:
            pubs.close()
    assert rc == 1 and _found(rep) == {("qos_incompatible", "/camera/image_raw")}, out
    (f,) = rep["findings"]
    assert "RELIABILITY" in f["message"] and "/test_sensors" in f["message"] and "best_effort" in f["hint"]


@pytest.mark.ros
def test_doctor_names_unsupported_encodings_of_image_and_depth(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        pubs = Publishers(mp, 76, cloud=False, depth=True, image_encoding="bgra8", depth_encoding="8UC1")
        try:
            rc, rep, out = _doctor(pubs.env, tmp_path, "-p", "geometry_source:=depth", *TRANSFORMS)
        finally:
            pubs.close()
    assert rc == 1, out
    assert _found(rep) == {("unsupported_encoding", "/camera/image_raw"),
                           ("unsupported_encoding", "/camera/depth/image_raw")}, out
    msgs = {f["topic"]: f["message"] for f in rep["findings"]}
    assert "'bgra8'" in msgs["/camera/image_raw"] and "'8UC1'" in msgs["/camera/depth/image_raw"]


@pytest.mark.ros
def test_doctor_measures_the_stamp_offset_and_finds_the_missing_transform(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        pubs = Publishers(mp, 77, cloud_dt_ns=-2000 * MS)            # the LiDAR's clock 2 s behind the camera's
        try:
            rc, rep, out = _doctor(pubs.env, tmp_path)                # T_* parameters not set
        finally:
            pubs.close()
    assert rc == 1 and _found(rep) == {("sync_offset", "/lidar/points"), ("no_transform", "")}, out
    msgs = {f["cause"]: f["message"] for f in rep["findings"]}
    offs = np.array(rep["missed_offsets_ns"]) / 1e6
    # the nearest cloud when a frame is taken (after its 0.2 s wait): the 2 s offset, less up to 2 periods
    med = float(np.median(offs))
    assert len(offs) >= 3 and np.all((offs >= -2000.5) & (offs <= -1799.5)), offs
    assert f"{med:+.0f} ms" in msgs["sync_offset"] and "sync_tolerance_s = 0.05 s" in msgs["sync_offset"]
    assert "T_base_camera" in msgs["no_transform"]       # (T_camera_lidar is needed only once clouds pair)


# ------------------------------------------------------------------ the node's /diagnostics say the same
@pytest.mark.ros
def test_the_node_diagnoses_its_inputs_in_the_log_and_in_diagnostics(tmp_path_factory):
    import rclpy
    from rclpy.parameter import Parameter

    from test_node_harness import Harness, make_small_checkpoint
    from ros2_amodal_seg.ros import conversions as conv
    from ros2_amodal_seg.ros.rosenv import ROS_ENV_KEYS, loopback_ros_env
    from ros2_amodal_seg.world import render_frame

    frame = render_frame("shapes-street", 3, 160, 120)
    ckpt = make_small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.safetensors")
    params = {"checkpoint": ckpt, "device": "cpu", "inference.max_instances": 3, "torch_threads": 1,
              "T_camera_lidar": [float(v) for v in frame.T_camera_lidar.ravel()],
              "T_base_camera": [float(v) for v in frame.T_base_camera.ravel()],
              "input_timeout_s": 1.0, "diagnostics_period_s": 0.3, "sync_cloud_wait_s": 0.3}
    with pytest.MonkeyPatch.context() as mp:
        env = loopback_ros_env(78)
        for k in ROS_ENV_KEYS:
            mp.setenv(k, env[k])
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        h = Harness(ctx, params)
        logged: list[str] = []
        h.node.health._log = logged.append
        try:
            def diagnosis_has(*parts) -> bool:
                d = h.diag_values().get("diagnosis", "")
                return all(p in d for p in parts)

            def run(seconds: float, cloud_dt_ns=20 * MS, info=True, cloud=True, encoding="rgb8"):
                t_end = time.monotonic() + seconds
                while time.monotonic() < t_end:
                    stamp = T0 + int(time.monotonic() * 1e9)
                    if info:
                        h.pub_info.publish(conv.KD_to_camera_info(frame.K, frame.D, (120, 160), stamp,
                                                                  "camera_optical_frame"))
                    img = conv.rgb_to_image_msg(frame.rgb, stamp, "camera_optical_frame")
                    if encoding != "rgb8":
                        img.encoding = encoding
                    h.pub_image.publish(img)
                    if cloud:
                        h.pub_cloud.publish(conv.xyzi_to_pointcloud2(frame.lidar_points, stamp + cloud_dt_ns,
                                                                     "lidar"))
                    time.sleep(0.2)

            run(2.0)                                                  # healthy first
            assert h.diag_values().get("diagnosis") == "ok", h.diag_values().get("diagnosis")
            run(2.5, cloud_dt_ns=-2000 * MS)                          # the LiDAR's clock 2 s behind
            assert diagnosis_has("sync_offset /lidar/points"), h.diag_values()
            h.node.set_parameters([Parameter("T_base_camera", value=[0.0] * 16)])
            run(1.5)
            assert diagnosis_has("no_transform"), h.diag_values()
            h.node.set_parameters([Parameter("T_base_camera", value=params["T_base_camera"])])
            h.peer.destroy_publisher(h.pub_cloud)                     # no publisher on the cloud topic ...
            h.peer.destroy_publisher(h.pub_info)                      # ... and none on camera_info
            run(2.5, info=False, cloud=False)
            h.wait_for(lambda: diagnosis_has("no_publisher /lidar/points", "no_camera_info /camera/camera_info"),
                       5.0, "no publisher / no camera_info diagnosed")
            run(2.0, info=False, cloud=False, encoding="bgra8")
            h.wait_for(lambda: diagnosis_has("unsupported_encoding /camera/image_raw"), 5.0, "bgra8 diagnosed")
            d = h.diag_values()
            assert d["geometry_source"] == "lidar"
            text = "\n".join(logged)
            for cause in ("sync_offset", "no_transform", "no_publisher", "no_camera_info", "unsupported_encoding"):
                assert f"[{cause}]" in text, cause                    # each also said in the log
            assert "'bgra8'" in text and " ms away" in text
        finally:
            h.close()
            rclpy.shutdown(context=ctx)


@pytest.mark.ros
def test_the_node_counts_bad_depth_images_and_fuses_good_ones(tmp_path_factory):
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from test_node_harness import Harness, make_small_checkpoint
    from ros2_amodal_seg.ros import conversions as conv
    from ros2_amodal_seg.ros.rosenv import ROS_ENV_KEYS, loopback_ros_env
    from ros2_amodal_seg.world import render_frame
    from ros2_amodal_seg.world.depth_camera import simulate_depth

    frame = render_frame("shapes-tabletop", 3, 160, 120, lidar=False)
    ckpt = make_small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.safetensors")
    params = {"checkpoint": ckpt, "device": "cpu", "inference.score_threshold": 0.0, "inference.max_instances": 3,
              "torch_threads": 1, "geometry_source": "depth", "fusion_preset": "tabletop",
              "T_base_camera": [float(v) for v in frame.T_base_camera.ravel()], "sync_cloud_wait_s": 1.0,
              "diagnostics_period_s": 0.3}
    mm = simulate_depth(frame.depth, frame.rgb, 3)

    def depth_msg(arr, stamp, encoding="16UC1"):
        m = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, step=arr.itemsize * arr.shape[1],
                  data=np.ascontiguousarray(arr).tobytes())
        m.header = conv.make_header(stamp, "camera_optical_frame")
        return m

    with pytest.MonkeyPatch.context() as mp:
        env = loopback_ros_env(78)
        for k in ROS_ENV_KEYS:
            mp.setenv(k, env[k])
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        h = Harness(ctx, params, wait_cloud_sub=False)
        try:
            pub = h.peer.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data)
            h.wait_for(lambda: pub.get_subscription_count() >= 1, 15.0, "depth subscription")
            assert h.pub_cloud.get_subscription_count() == 0                  # no LiDAR subscription

            def send(stamp, depth):
                h.pub_info.publish(conv.KD_to_camera_info(frame.K, frame.D, (120, 160), stamp, "camera_optical_frame"))
                h.pub_image.publish(conv.rgb_to_image_msg(frame.rgb, stamp, "camera_optical_frame"))
                pub.publish(depth)

            counters = h.node.health.counters

            def fused_after(stamp0) -> int:
                """Send good frames (best effort: the first of a new connection may be lost) until one comes
                out fused; returns its stamp."""
                for k in range(10):
                    stamp = stamp0 + k * 100 * MS
                    send(stamp, depth_msg(mm, stamp))
                    t_end = time.monotonic() + 3.0
                    while time.monotonic() < t_end:
                        with h.lock:
                            fused = [conv.time_to_ns(m.header.stamp) for m in h.got["instances"]
                                     if any(i.has_3d for i in m.instances)]
                        if stamp in fused:
                            return stamp
                        time.sleep(0.05)
                raise AssertionError("no fused output")

            fused_after(T0)                                                    # good depth: fused
            n0 = h.count("instances")
            send(T0 + 2000 * MS, depth_msg(mm[::2, ::2].copy(), T0 + 2000 * MS))   # not the colour image's size
            h.wait_for(lambda: counters.get("depth_size_mismatch") >= 1, 15.0, "size mismatch counted")
            send(T0 + 2100 * MS, depth_msg(np.zeros((120, 160), np.uint8), T0 + 2100 * MS, "8UC1"))
            h.wait_for(lambda: counters.get("depth_encoding") >= 1 and counters.get("bad_depth") >= 1, 15.0,
                       "encoding counted")
            h.wait_for(lambda: h.count("instances") >= n0 + 2, 30.0, "frames go on (2-D) after bad depth")
            fused_after(T0 + 3000 * MS)                                        # and fused again
            assert counters.get("processing_errors") == 0 and counters.get("frames_fused") >= 2
            h.wait_for(lambda: int(h.diag_values().get("depth_images_received", 0)) >= 4, 5.0, "diagnostics")
        finally:
            h.close()
            rclpy.shutdown(context=ctx)
