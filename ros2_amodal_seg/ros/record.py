"""Record topics into an mcap rosbag2 with rosbags (a small ``ros2 bag record``).

Messages are received as serialized CDR bytes (``raw=True``) and written unchanged.
Definitions for the bag's metadata come from the rosbags typestore (ROS 2 Jazzy)
plus the ``.msg`` files of this package (``msg/`` in the source tree or
``share/ros2_amodal_seg/msg``), so ``ros2_amodal_seg/msg/...`` types can be recorded.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ros2_amodal_seg.errors import DatasetError, InvalidInputError

log = logging.getLogger(__name__)

PACKAGE = "ros2_amodal_seg"


@dataclass(frozen=True)
class RecordConfig:
    """Record options.

    Attributes:
        duration_s: stop after this many seconds (0 = no limit).
        count: stop after this many messages in total (0 = no limit).
        discovery_timeout_s: how long to wait for the topics' publishers to appear.
        storage: "mcap" or "sqlite3".
    """

    duration_s: float = 0.0
    count: int = 0
    discovery_timeout_s: float = 10.0
    storage: str = "mcap"

    def __post_init__(self) -> None:
        if self.duration_s < 0 or self.count < 0:
            raise InvalidInputError("duration and count must be >= 0")
        if self.storage not in ("mcap", "sqlite3"):
            raise InvalidInputError(f"storage must be mcap or sqlite3, got {self.storage!r}")


def msg_dirs() -> list[Path]:
    """Folders that may hold this package's ``.msg`` files."""
    root = Path(__file__).resolve().parents[2]
    dirs = [root / "msg"]
    for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if p:
            dirs.append(Path(p) / "share" / PACKAGE / "msg")
    return [d for d in dirs if d.is_dir()]


def package_typestore():
    """The Jazzy typestore plus this package's message definitions."""
    from rosbags.typesys import get_types_from_msg

    from ros2_amodal_seg.data.bag import get_typestore

    ts = get_typestore()
    for d in msg_dirs():
        types = {}
        for f in sorted(d.glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"{PACKAGE}/msg/{f.stem}"))
        if types:
            ts.register(types)
            break
    return ts


def record(out: str | Path, topics: list[str], cfg: RecordConfig = RecordConfig(), node=None,
           should_stop=None) -> dict[str, int]:
    """Subscribe to ``topics`` and write every received message to a new bag at ``out``.

    Returns:
        messages written per topic.

    Raises:
        DatasetError: ``out`` exists or cannot be written. InvalidInputError: a topic
            did not appear within the discovery timeout, or its type is unknown.
    """
    import rclpy
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                           qos_profile_sensor_data)
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ros2_amodal_seg.data.bag import sensor_qos, tf_static_qos
    from ros2_amodal_seg.ros.replay import import_msg_class

    out = Path(out)
    if out.exists():
        raise DatasetError(f"bag folder {out} already exists")
    if not topics:
        raise InvalidInputError("give at least one topic to record")
    ts = package_typestore()
    own = node is None
    if own:
        rclpy.init()
        node = rclpy.create_node("amodal_seg_record")
    writer = None
    try:
        # discover the types
        types: dict[str, str] = {}
        t_end = time.monotonic() + cfg.discovery_timeout_s
        while len(types) < len(topics) and time.monotonic() < t_end:
            for name, tl in node.get_topic_names_and_types():
                if name in topics and tl:
                    types[name] = tl[0]
            rclpy.spin_once(node, timeout_sec=0.1)
        missing = [t for t in topics if t not in types]
        if missing:
            raise InvalidInputError(f"no publisher found for {missing} within {cfg.discovery_timeout_s} s")
        for t, mt in types.items():
            if mt not in ts.types:
                raise InvalidInputError(f"type {mt} of {t} has no definition in the typestore or msg/")
            if import_msg_class(mt) is None:
                raise InvalidInputError(f"type {mt} of {t} has no importable Python module here")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP if cfg.storage == "mcap"
                            else StoragePlugin.SQLITE3)
            writer.open()
        except OSError as exc:
            raise DatasetError(f"cannot create bag {out}: {exc}") from exc
        conns, counts = {}, {}
        total = [0]
        for t, mt in types.items():
            static = t == "/tf_static"
            conns[t] = writer.add_connection(t, mt, typestore=ts,
                                             offered_qos_profiles=[tf_static_qos() if static else sensor_qos()])
            counts[t] = 0
            qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL) if static else qos_profile_sensor_data

            def cb(raw, t=t):
                if cfg.count and total[0] >= cfg.count:
                    return
                writer.write(conns[t], node.get_clock().now().nanoseconds, bytes(raw))
                counts[t] += 1
                total[0] += 1

            node.create_subscription(import_msg_class(mt), t, cb, qos, raw=True)
        t0 = time.monotonic()
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
            if cfg.count and total[0] >= cfg.count:
                break
            if cfg.duration_s and time.monotonic() - t0 >= cfg.duration_s:
                break
            if should_stop is not None and should_stop():
                break
        return counts
    finally:
        if writer is not None:
            writer.close()
        if own:
            node.destroy_node()
            rclpy.try_shutdown()
