"""The node's output topics: their lifecycle publishers, and one frame's outputs as messages.

:class:`OutputPublishers` creates the publishers of :data:`OUTPUTS` on a lifecycle node and
publishes a :class:`~ros2_amodal_seg.runtime.processor.FrameOutput` on them (the enabled ones).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from nav_msgs.msg import OccupancyGrid
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from ros2_amodal_seg.msg import AmodalInstanceArray, BevGrid, OcclusionGraph
from ros2_amodal_seg.ros import conversions as conv
from ros2_amodal_seg.ros.markers import build_markers
from ros2_amodal_seg.runtime.overlay import instance_color, render_overlay

#: output topic name (in the node's namespace) -> message type.
OUTPUTS: dict[str, type] = {
    "~/instances": AmodalInstanceArray, "~/occlusion_graph": OcclusionGraph, "~/bev_grid": BevGrid,
    "~/occupancy": OccupancyGrid, "~/markers": MarkerArray, "~/overlay": Image, "~/instance_points": PointCloud2,
}


@dataclass(frozen=True)
class OutputSettings:
    """Which outputs are published (the ``publish_*`` parameters) and how."""

    base_frame: str = "base_link"
    graph: bool = True
    bev_grid: bool = True
    occupancy: bool = True
    markers: bool = True
    overlay: bool = True
    instance_points: bool = True
    marker_lifetime_s: float = 0.0

    @staticmethod
    def from_values(v: dict) -> "OutputSettings":
        """From the node's parameter values (``publish_*``, ``marker_lifetime_s``, ``base_frame``)."""
        return OutputSettings(base_frame=str(v["base_frame"]), graph=v["publish_graph"], bev_grid=v["publish_bev_grid"],
                              occupancy=v["publish_occupancy"], markers=v["publish_markers"],
                              overlay=v["publish_overlay"], instance_points=v["publish_instance_points"],
                              marker_lifetime_s=float(v["marker_lifetime_s"]))


class OutputPublishers:
    """The lifecycle publishers of :data:`OUTPUTS` (reliable, volatile, depth 5: compatible with
    best-effort and reliable subscribers).

    Args:
        node: the lifecycle node. on_incompatible_qos: ``f(topic, info)`` for a subscriber with
            incompatible QoS.
    """

    def __init__(self, node, on_incompatible_qos) -> None:
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        self.node = node
        self.pubs = {}
        for topic, mtype in OUTPUTS.items():
            ev = PublisherEventCallbacks(incompatible_qos=lambda info, t=topic: on_incompatible_qos(t, info))
            self.pubs[topic[2:]] = node.create_lifecycle_publisher(mtype, topic, qos, event_callbacks=ev)

    def destroy(self) -> None:
        for p in self.pubs.values():
            self.node.destroy_lifecycle_publisher(p)
        self.pubs = {}

    def publish(self, inp, out, s: OutputSettings) -> float | None:
        """Publish one frame's outputs; returns the overlay's rendering time [ms] (None when not rendered)."""
        pubs, stamp = self.pubs, inp.stamp_ns
        if not pubs:
            return None
        pubs["instances"].publish(conv.instance_array_to_msg(out.instances))
        if s.graph:
            pubs["occlusion_graph"].publish(conv.graph_to_msg(out.graph))
        if out.bev is not None:
            if s.bev_grid:
                pubs["bev_grid"].publish(conv.bev_to_msg(out.bev))
            if s.occupancy:
                pubs["occupancy"].publish(conv.occupancy_to_msg(out.occupancy, out.bev.resolution, out.bev.origin_xy,
                                                                stamp, out.bev.frame_id))
        if s.markers:
            pubs["markers"].publish(build_markers(out.instances, out.graph, lifetime_s=s.marker_lifetime_s))
        if s.instance_points and len(out.instance_points):
            ids = np.asarray(out.instance_point_ids)
            colors = np.array([instance_color(int(i)) for i in range(int(ids.max()) + 1)], np.uint8)[ids]
            pubs["instance_points"].publish(conv.xyz_rgb_to_pointcloud2(out.instance_points, colors, stamp,
                                                                        s.base_frame, ids=ids))
        overlay = pubs["overlay"]
        if s.overlay and overlay.get_subscription_count() > 0:   # rendered only while someone looks
            t0 = time.monotonic()
            overlay.publish(conv.rgb_to_image_msg(render_overlay(inp.image_rgb, out.instances), stamp,
                                                  inp.camera_frame))
            return 1e3 * (time.monotonic() - t0)
        return None
