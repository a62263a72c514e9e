"""Replay a generated bag to a real rclpy subscriber, and record topics (incl. our custom
message types) back into a bag: separate processes on loopback-only DDS."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ros2_amodal_seg.data.bag import read_bag
from ros2_amodal_seg.world.cli import generate

PY = sys.executable
AMODAL = [PY, "-m", "ros2_amodal_seg.cli"]

SUB = textwrap.dedent("""
    import json, sys, time
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2, CameraInfo
    n, timeout = int(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("bag_test_sub")
    got = {"image": [], "points": [], "info": []}
    st = lambda h: h.stamp.sec * 1000000000 + h.stamp.nanosec
    node.create_subscription(Image, "/camera/image_raw", lambda m: got["image"].append(
        [st(m.header), m.width, m.height, m.encoding, int(sum(bytes(m.data)))]), qos_profile_sensor_data)
    node.create_subscription(PointCloud2, "/lidar/points", lambda m: got["points"].append(
        [st(m.header), m.width, m.header.frame_id]), qos_profile_sensor_data)
    node.create_subscription(CameraInfo, "/camera/camera_info", lambda m: got["info"].append(
        [st(m.header), list(m.k)]), qos_profile_sensor_data)
    print("ready", flush=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and min(len(v) for v in got.values()) < n:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps(got), flush=True)
""")

PUB_CUSTOM = textwrap.dedent("""
    import sys, time
    import rclpy
    from ros2_amodal_seg.msg import MaskRLE
    rclpy.init()
    node = rclpy.create_node("bag_test_custom_pub")
    pub = node.create_publisher(MaskRLE, "/amodal/test_mask", 10)
    m = MaskRLE()
    m.height, m.width, m.counts = 4, 5, "0k0"
    t0 = time.monotonic()
    while time.monotonic() - t0 < float(sys.argv[1]):
        pub.publish(m)
        rclpy.spin_once(node, timeout_sec=0.1)
""")


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("rosbag")
    generate("shapes-street", 3, 21, out, width=160, height=120, bag=True, progress=False)
    return out


def _env(ros_env):
    return ros_env(random.Random(os.getpid()).randint(40, 99))


def test_replay_to_rclpy_subscriber(small_bag, ros_env):
    env = _env(ros_env)
    doc = json.loads((small_bag / "annotations.json").read_text())
    sub = subprocess.Popen([PY, "-c", SUB, "3", "25"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert sub.stdout.readline().strip() == "ready"
        rep = subprocess.run(AMODAL + ["replay", str(small_bag / "bag"), "--rate", "1", "--start-delay", "0.5",
                                         "--wait-subscribers", "1"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert rep.returncode == 0, rep.stderr
        assert "tf2_msgs" in rep.stderr or "tf2_msgs" not in rep.stdout   # skipped with a warning if absent
        out, err = sub.communicate(timeout=40)
    finally:
        if sub.poll() is None:
            sub.kill()
    got = json.loads(out.strip().splitlines()[-1])
    stamps = [im["stamp_ns"] for im in doc["images"]]
    assert [g[0] for g in got["image"]] == stamps
    assert all(g[1:4] == [160, 120, "rgb8"] for g in got["image"])
    assert [g[0] for g in got["points"]] == [im["lidar_stamp_ns"] for im in doc["images"]]
    widths = [len(np.load(small_bag / im["lidar_file_name"])) for im in doc["images"]]
    assert [g[1] for g in got["points"]] == widths and all(g[2] == "lidar" for g in got["points"])
    np.testing.assert_allclose(got["info"][0][1], doc["images"][0]["camera"]["K"])


def test_record_sensor_and_custom_topics(small_bag, ros_env, tmp_path):
    env = _env(ros_env)
    rec_dir = tmp_path / "rec"
    pub = subprocess.Popen([PY, "-c", PUB_CUSTOM, "30"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        rep = subprocess.Popen(AMODAL + ["replay", str(small_bag / "bag"), "--loop", "--start-delay", "1",
                                         "--topics", "/camera/camera_info"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            rec = subprocess.run(AMODAL + ["record", "--out", str(rec_dir), "/amodal/test_mask",
                                           "/camera/camera_info", "--duration", "2.5"],
                                 env=env, capture_output=True, text=True, timeout=60)
        finally:
            rep.kill()
            rep.communicate()
        assert rec.returncode == 0, rec.stderr
    finally:
        pub.kill()
        pub.communicate()
    msgs = list(read_bag(rec_dir))
    masks = [m for m in msgs if m.topic == "/amodal/test_mask"]
    infos = [m for m in msgs if m.topic == "/camera/camera_info"]
    assert masks and masks[0].msgtype == "ros2_amodal_seg/msg/MaskRLE"
    assert (masks[0].msg.height, masks[0].msg.width, masks[0].msg.counts) == (4, 5, "0k0")
    assert infos and infos[0].msgtype == "sensor_msgs/msg/CameraInfo"
    assert (infos[0].msg.width, infos[0].msg.height) == (160, 120)
    assert "storage_identifier: mcap" in (rec_dir / "metadata.yaml").read_text()
