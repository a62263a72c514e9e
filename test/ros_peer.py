"""A separate ROS process for the two-process message round-trip test.

    python ros_peer.py pub   # publishes every sample message (reliable, transient-local) until killed
    python ros_peer.py sub OUT_DIR TIMEOUT_S   # waits for one of each, writes their CDR bytes to OUT_DIR

The environment (loopback DDS, ROS_DOMAIN_ID) is set by the test.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message

sys.path.insert(0, str(Path(__file__).parent))
import msg_samples  # noqa: E402

from ros2_amodal_seg.msg import (AmodalInstanceArray, BevGrid, MaskRLE, OcclusionEdge,  # noqa: E402
                                 OcclusionGraph, AmodalInstance)
from ros2_amodal_seg.ros import conversions as conv  # noqa: E402


def sample_messages() -> dict:
    arr = conv.instance_array_to_msg(msg_samples.make_instance_array(1))
    graph = conv.graph_to_msg(msg_samples.make_graph(2))
    return {"instances": (AmodalInstanceArray, arr), "graph": (OcclusionGraph, graph),
            "bev": (BevGrid, conv.bev_to_msg(msg_samples.make_bev(3))),
            "instance": (AmodalInstance, arr.instances[0]), "mask": (MaskRLE, arr.instances[0].amodal_mask),
            "edge": (OcclusionEdge, graph.edges[0])}


QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> int:
    mode = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node(f"roundtrip_{mode}")
    msgs = sample_messages()
    if mode == "pub":
        pubs = {k: node.create_publisher(t, f"/roundtrip/{k}", QOS) for k, (t, _) in msgs.items()}
        for k, (_, m) in msgs.items():
            pubs[k].publish(m)
        print("published", flush=True)
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.5)
        return 0
    out, timeout = Path(sys.argv[2]), float(sys.argv[3])
    got: dict[str, bytes] = {}
    for k, (t, _) in msgs.items():
        node.create_subscription(t, f"/roundtrip/{k}", lambda m, k=k: got.setdefault(k, serialize_message(m)), QOS)
    t0 = time.monotonic()
    while len(got) < len(msgs) and time.monotonic() - t0 < timeout:
        rclpy.spin_once(node, timeout_sec=0.1)
    for k, b in got.items():
        (out / f"{k}.cdr").write_bytes(b)
    print("received", sorted(got), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(got) == len(msgs) else 3


if __name__ == "__main__":
    sys.exit(main())
