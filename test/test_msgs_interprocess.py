"""Every custom message crosses real rclpy/DDS between two separate processes.

A publisher process sends one of each message; a subscriber process receives them
and writes their CDR bytes; this test deserializes and compares field by field,
decoding masks and comparing them with the originals.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.serialization import deserialize_message

import msg_samples
from ros2_amodal_seg.msg import AmodalInstance, AmodalInstanceArray, BevGrid, MaskRLE, OcclusionEdge, OcclusionGraph
from ros2_amodal_seg.ros import conversions as conv

PEER = Path(__file__).parent / "ros_peer.py"
pytestmark = pytest.mark.ros


def test_all_messages_roundtrip_between_processes(tmp_path, ros_env):
    env = ros_env(41)
    pub = subprocess.Popen([sys.executable, str(PEER), "pub"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        sub = subprocess.run([sys.executable, str(PEER), "sub", str(tmp_path), "40"], env=env,
                             capture_output=True, text=True, timeout=90)
    finally:
        pub.terminate()
        try:
            pub.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pub.kill()
    assert sub.returncode == 0, sub.stdout + sub.stderr

    def load(name, t):
        return deserialize_message((tmp_path / f"{name}.cdr").read_bytes(), t)

    arr = conv.msg_to_instance_array(load("instances", AmodalInstanceArray))
    msg_samples.assert_instance_arrays_equal(msg_samples.make_instance_array(1), arr)
    msg_samples.assert_graphs_equal(msg_samples.make_graph(2), conv.msg_to_graph(load("graph", OcclusionGraph)))
    msg_samples.assert_bevs_equal(msg_samples.make_bev(3), conv.msg_to_bev(load("bev", BevGrid)))

    original = msg_samples.make_instance_array(1).instances[0]
    single = conv.msg_to_instance(load("instance", AmodalInstance), (msg_samples.H, msg_samples.W))
    assert (single.id, single.class_name) == (original.id, original.class_name)
    assert (single.amodal_mask == original.amodal_mask).all() and (single.visible_mask == original.visible_mask).all()
    rle = load("mask", MaskRLE)
    ref_rle, ref_roi = conv.mask_to_msg(original.amodal_mask)
    assert (rle.height, rle.width, rle.counts) == (ref_rle.height, ref_rle.width, ref_rle.counts)
    assert (conv.msg_to_mask(rle, ref_roi, (msg_samples.H, msg_samples.W)) == original.amodal_mask).all()
    edge = load("edge", OcclusionEdge)
    e0 = msg_samples.make_graph(2).edges[0]
    assert (edge.occluder_id, edge.occludee_id, edge.overlap_px, edge.source) == (e0.occluder_id, e0.occludee_id,
                                                                                  e0.overlap_px, e0.source)
    assert edge.source & OcclusionEdge.SOURCE_LIDAR and edge.source & OcclusionEdge.SOURCE_MASK
