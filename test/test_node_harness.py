"""In-process harness for the node tests (no tests here): the node plus a peer node (sensor publishers,
output subscribers) in one rclpy context on loopback DDS, spun in a background thread."""
from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from ros2_amodal_seg.msg import AmodalInstanceArray, BevGrid, OcclusionGraph
from ros2_amodal_seg.ros import conversions as conv
from ros2_amodal_seg.ros.session import pipeline_values_from_diagnostics

OUT_TYPES = {"instances": AmodalInstanceArray, "occlusion_graph": OcclusionGraph, "bev_grid": BevGrid,
             "occupancy": OccupancyGrid, "markers": MarkerArray, "overlay": Image, "instance_points": PointCloud2}


def make_small_checkpoint(path) -> str:
    """A tiny random-init checkpoint of the 5 shapes classes (the node mechanics do not depend on model
    quality; the node tests feed it shapes-world frames)."""
    import torch

    from ros2_amodal_seg.classes import SHAPES_CLASSES
    from ros2_amodal_seg.model.backbone import BackboneConfig
    from ros2_amodal_seg.model.checkpoint import save_checkpoint
    from ros2_amodal_seg.model.model import AmodalSegModel, ModelConfig
    from ros2_amodal_seg.model.transformer_decoder import TransformerDecoderConfig

    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=len(SHAPES_CLASSES), input_height=96, input_width=128, hidden_dim=32, mask_dim=32,
                      backbone=BackboneConfig(name="plain", channels=(8, 16, 24, 32), blocks=(1, 1, 1, 1), stem_channels=8),
                      decoder=TransformerDecoderConfig(num_queries=10, num_heads=2, dim_feedforward=32,
                                                       num_layers=1))
    return str(save_checkpoint(path, AmodalSegModel(cfg), cfg, SHAPES_CLASSES))


class Harness:
    """``Harness(context, params)``: the node under test + a peer; ``close()`` when done."""

    def __init__(self, context, params: dict, node_name: str = "amodal_seg", wait_image_sub: bool = True,
                 wait_cloud_sub: bool = True) -> None:
        from ros2_amodal_seg.ros.node import AmodalSegNode

        self.ctx = context
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.node = AmodalSegNode(node_name, context=context, parameter_overrides=overrides)
        self.peer = rclpy.create_node("test_peer", context=context)
        self.lock = threading.Lock()
        self.got: dict[str, list] = {k: [] for k in list(OUT_TYPES) + ["diagnostics"]}
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = [self.peer.create_subscription(t, f"/{node_name}/{k}", lambda m, k=k: self._store(k, m), qos)
                     for k, t in OUT_TYPES.items()]
        self.subs.append(self.peer.create_subscription(DiagnosticArray, "/diagnostics",
                                                       lambda m: self._store("diagnostics", m), 10))
        self.pub_image = self.peer.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        self.pub_info = self.peer.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
        self.pub_cloud = self.peer.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()
        pubs = [p for p, wait in ((self.pub_image, wait_image_sub), (self.pub_info, True),
                                  (self.pub_cloud, wait_cloud_sub)) if wait]
        self.wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs), 15.0,
                      "node subscriptions not matched")
        self.wait_for(lambda: self.node._pubs and self.node._pubs.pubs["instances"].get_subscription_count() >= 1, 15.0,
                      "output subscriptions not matched")

    def _spin_loop(self) -> None:
        while self._running and self.ctx.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _store(self, key: str, msg) -> None:
        with self.lock:
            self.got[key].append(msg)

    def count(self, key: str) -> int:
        with self.lock:
            return len(self.got[key])

    def wait_for(self, pred, timeout: float, what: str = "condition") -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return
            time.sleep(0.02)
        raise AssertionError(f"timeout after {timeout} s: {what}")

    def publish_frame(self, frame, stamp_ns: int, *, cloud: bool = True, info: bool = True,
                      cloud_dt_ns: int = 20_000_000) -> None:
        """Publish camera_info, image and (later-stamped) cloud of a ``world.render_frame`` Frame."""
        if info:
            self.pub_info.publish(conv.KD_to_camera_info(frame.K, frame.D, frame.rgb.shape[:2], stamp_ns,
                                                         "camera_optical_frame"))
        self.pub_image.publish(conv.rgb_to_image_msg(frame.rgb, stamp_ns, "camera_optical_frame"))
        if cloud:
            self.pub_cloud.publish(conv.xyzi_to_pointcloud2(frame.lidar_points, stamp_ns + cloud_dt_ns, "lidar"))

    def diag_values(self) -> dict[str, str]:
        with self.lock:
            msgs = list(self.got["diagnostics"])
        return pipeline_values_from_diagnostics(msgs)

    def quiet_diag_values(self, keys, reports: int = 3, timeout: float = 30.0) -> dict[str, str]:
        """Diagnostics values of a quiet node: the first report, received after this call, whose ``keys``
        equal those of the ``reports - 1`` reports before it (all received after this call).

        A report is a snapshot taken on the node's timer, so the latest one can predate work the node
        finished since: its publisher thread counts a frame as processed only after every output
        message is out, i.e. after a subscriber already has the instance array."""
        with self.lock:
            n0 = len(self.got["diagnostics"])
        same, prev = 0, None
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self.lock:
                fresh = list(self.got["diagnostics"][n0:])
            n0 += len(fresh)
            for m in fresh:
                vals = pipeline_values_from_diagnostics([m])
                if not vals:
                    continue
                cur = {k: vals.get(k, "0") for k in keys}
                same = same + 1 if cur == prev else 1
                if same >= reports:
                    return vals
                prev = cur
            time.sleep(0.05)
        raise AssertionError(f"timeout after {timeout} s: diagnostics counters {list(keys)} never steady")

    def close(self) -> None:
        self._running = False
        self._spin.join(timeout=5)
        self.node.close()
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        self.peer.destroy_node()


def frame_params(frame, ckpt: str, **extra) -> dict:
    """Node parameters for a rendered frame: extrinsics from the world, CPU, all detections."""
    p = {"checkpoint": ckpt, "device": "cpu", "inference.score_threshold": 0.0, "inference.max_instances": 5,
         "T_camera_lidar": [float(v) for v in np.asarray(frame.T_camera_lidar).ravel()],
         "T_base_camera": [float(v) for v in np.asarray(frame.T_base_camera).ravel()],
         "sync_cloud_wait_s": 1.0, "sync_max_frame_age_s": 30.0, "diagnostics_period_s": 0.5,
         "torch_threads": 1}
    p.update(extra)
    return p
