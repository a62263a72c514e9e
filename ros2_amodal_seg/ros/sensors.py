"""The node's sensor subscriptions: raw (serialised) messages decoded with ``rosbags`` into
numpy views of their buffer (no copy of the pixels or points), checked where they arrive
(:class:`~ros2_amodal_seg.runtime.inputs.InputGate`) and handed to the synchroniser
(:class:`~ros2_amodal_seg.runtime.sync.FrameSync`). The callbacks never block.
"""
from __future__ import annotations

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from rosbags.serde import SerdeError
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ros2_amodal_seg.data.bag import get_typestore
from ros2_amodal_seg.ros import conversions as conv

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_IMAGE_COMPRESSED = "/camera/image_raw/compressed"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_POINTS = "/lidar/points"
TOPIC_DEPTH = "/camera/depth/image_raw"
#: the topic of each 3-D source (``geometry_source``); none has no topic.
GEOMETRY_TOPICS: dict[str, tuple[str, str]] = {"lidar": ("cloud", TOPIC_POINTS), "depth": ("depth", TOPIC_DEPTH)}


def incompatible_qos_warning(health, log, kind: str, topic: str, info) -> None:
    """Count and log a subscription / publisher whose peer has incompatible QoS, naming the policy."""
    health.counters.inc("qos_incompatible")
    health.mark(f"qos_incompatible:{topic}", qos_policy_name_from_kind(info.last_policy_kind))
    hint = (" (inputs use best_effort by default; set qos_reliability or the publisher's QoS)"
            if kind == "subscription" else "")
    log.warning(f"incompatible QoS on {kind} {topic}: policy {qos_policy_name_from_kind(info.last_policy_kind)} "
                f"({info.total_count} incompatible endpoint(s)){hint}")


class SensorSubscriptions:
    """Image (or CompressedImage), CameraInfo and the 3-D source's subscriptions of a node: PointCloud2
    (``geometry_source: lidar``), a depth Image (``depth``) or none.

    Args:
        node: the node (parameters ``use_compressed``, ``qos_reliability``, ``qos_depth``,
            ``geometry_source``; its logger, topic resolution and subscription factory).
        gate, sync, health: the node's input checks, synchroniser and health.

    Attributes:
        inputs: ``(key, message type name, topic)`` of each subscription (unresolved topic).
        qos: the subscriptions' QoS profile.
    """

    def __init__(self, node, gate, sync, health) -> None:
        self.node, self.gate, self.sync, self.health = node, gate, sync, health
        self.active = False
        self.compressed = bool(node.get_parameter("use_compressed").value)
        self.geometry_source = str(node.get_parameter("geometry_source").value)
        self._typestore = get_typestore()
        reliable = node.get_parameter("qos_reliability").value == "reliable"
        self.qos = qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(node.get_parameter("qos_depth").value),
                                    reliability=ReliabilityPolicy.RELIABLE if reliable else
                                    ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
        subs = [("image", CompressedImage if self.compressed else Image, self.image_topic, self._on_image),
                ("camera_info", CameraInfo, TOPIC_CAMERA_INFO, self._on_camera_info)]
        if self.geometry_source == "lidar":
            subs.append(("cloud", PointCloud2, TOPIC_POINTS, self._on_cloud))
        elif self.geometry_source == "depth":
            subs.append(("depth", Image, TOPIC_DEPTH, self._on_depth))
        self.inputs = tuple((k, f"sensor_msgs/msg/{m.__name__}", t) for k, m, t, _ in subs)
        self.subs = []
        for key, mtype, topic, callback in subs:
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda info, t=topic: incompatible_qos_warning(health, node.get_logger(),
                                                                               "subscription", self.resolved(t), info),
                message_lost=lambda info, k=key, t=topic: self._on_message_lost(k, t, info))
            self.subs.append(node.create_subscription(
                mtype, topic, lambda raw, k=key, n=f"sensor_msgs/msg/{mtype.__name__}", cb=callback:
                self._decode(k, n, raw, cb), qos, event_callbacks=events, raw=True))

    @property
    def image_topic(self) -> str:
        return TOPIC_IMAGE_COMPRESSED if self.compressed else TOPIC_IMAGE

    def resolved(self, topic: str) -> str:
        try:
            return self.node.resolve_topic_name(topic)
        except (AttributeError, RuntimeError):
            return topic

    def destroy(self) -> None:
        for s in self.subs:
            self.node.destroy_subscription(s)
        self.subs = []

    def _decode(self, key: str, typename: str, raw: bytes, callback) -> None:
        self.health.rates[key].tick()
        if not self.active:
            return
        try:
            msg = self._typestore.deserialize_cdr(raw, typename)
        except SerdeError as exc:
            self.health.flag_bad()
            self.gate.refuse(key, f"{key}_cdr", f"cannot decode the {typename} message: {exc}")
            return
        callback(msg)

    def _on_message_lost(self, key: str, topic: str, info) -> None:
        """The middleware lost messages before our callback (a full history, a slow reader)."""
        n = self.health.counters.inc(f"messages_lost_{key}", int(info.total_count_change))
        self.health.warn(f"lost:{key}", f"{info.total_count_change} message(s) on {self.resolved(topic)} lost "
                                        f"before the callback ({n} in all): the node cannot keep up or qos_depth "
                                        "is too small")

    def _on_image(self, msg) -> None:
        self.health.frame_in()
        if not self.gate.image(msg, compressed=self.compressed):
            self.health.flag_bad()
            return
        self.health.accept("image")
        if self.sync.add_image(conv.time_to_ns(msg.header.stamp), msg):
            self._on_time_jump("image")

    def _on_camera_info(self, msg) -> None:
        intrinsics = self.gate.camera_info(msg)
        if intrinsics is None:
            self.health.flag_bad()
            return
        self.health.accept("camera_info")
        if self.sync.add_camera_info(intrinsics.stamp_ns, intrinsics):
            self._on_time_jump("camera_info")

    def _on_cloud(self, msg) -> None:
        if not self.gate.cloud(msg):
            self.health.flag_bad()
            return
        self.health.accept("cloud")
        if self.sync.add_cloud(conv.time_to_ns(msg.header.stamp), msg):
            self._on_time_jump("cloud")

    def _on_depth(self, msg) -> None:
        """A depth image takes a cloud's place in the synchroniser (paired with the nearest image)."""
        if not self.gate.depth(msg):
            self.health.flag_bad()
            return
        self.health.accept("depth")
        if self.sync.add_cloud(conv.time_to_ns(msg.header.stamp), msg):
            self._on_time_jump("depth")

    def _on_time_jump(self, topic: str) -> None:
        self.health.counters.inc("time_jumps")
        self.node.get_logger().warning(f"time jumped backwards on {topic} (bag loop / sim reset): caches cleared")
