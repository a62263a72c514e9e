"""Publish a rosbag2's messages with their original timing (a small ``ros2 bag play``).

Messages are published as serialized CDR bytes (no per-message conversion).
Topic QoS comes from the bag's offered QoS metadata, falling back to the sensor-data
profile; ``/tf_static`` is always reliable + transient-local. Types whose Python
message module cannot be imported here (``tf2_msgs`` has no PyPI wheel) are skipped
with one warning.
"""
from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ros2_amodal_seg.errors import DatasetError, InvalidInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayConfig:
    """Replay options.

    Attributes:
        rate: playback speed factor (2.0 = twice as fast), > 0.
        loop: start over at the end (until interrupted or ``max_loops``).
        topics: only these topics (None = all).
        clock: also publish ``/clock`` (rosgraph_msgs/Clock) with the bag's log time.
        start_delay_s: wait this long after creating the publishers (discovery).
        max_loops: stop after this many passes when ``loop`` (0 = forever).
        wait_subscribers: before starting, wait until every publisher has at least this
            many matched subscriptions (0 = do not wait), for at most ``wait_timeout_s``.
    """

    rate: float = 1.0
    loop: bool = False
    topics: tuple[str, ...] | None = None
    clock: bool = False
    start_delay_s: float = 0.5
    max_loops: int = 0
    wait_subscribers: int = 0
    wait_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise InvalidInputError(f"rate must be > 0, got {self.rate}")


def import_msg_class(msgtype: str):
    """``"pkg/msg/Name"`` -> the Python message class, or None when not importable."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        return None
    try:
        mod = importlib.import_module(f"{parts[0]}.{parts[1]}")
        return getattr(mod, parts[2])
    except (ImportError, AttributeError):
        return None


def qos_from_bag(topic: str, profiles):
    """rclpy ``QoSProfile`` for ``topic`` from rosbags ``Qos`` profiles (may be empty)."""
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                           qos_profile_sensor_data)

    if topic == "/tf_static":
        return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    if not profiles:
        return qos_profile_sensor_data
    p = profiles[0]
    rel = {"RELIABLE": ReliabilityPolicy.RELIABLE, "BEST_EFFORT": ReliabilityPolicy.BEST_EFFORT}.get(
        p.reliability.name, ReliabilityPolicy.BEST_EFFORT)
    dur = {"TRANSIENT_LOCAL": DurabilityPolicy.TRANSIENT_LOCAL}.get(p.durability.name, DurabilityPolicy.VOLATILE)
    depth = int(p.depth) if int(p.depth) > 0 else 10
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=rel, durability=dur)


def _load_bag(path: Path, topics):
    from rosbags.rosbag2 import Reader, ReaderError

    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError) as exc:
        raise DatasetError(f"cannot open bag {path}: {exc}") from exc
    try:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if topics is not None:
            missing = sorted(set(topics) - {c.topic for c in reader.connections})
            if missing:
                raise InvalidInputError(f"topics {missing} are not in the bag; it has "
                                        f"{sorted({c.topic for c in reader.connections})}")
        msgs = [(c, int(t), bytes(raw)) for c, t, raw in reader.messages(connections=conns)]
        return conns, msgs
    finally:
        reader.close()


def replay(bag: str | Path, cfg: ReplayConfig = ReplayConfig(), node=None, stop=None) -> dict[str, int]:
    """Publish the bag's messages; returns the number published per topic.

    Args:
        bag: rosbag2 folder (mcap or sqlite3).
        cfg: options.
        node: an existing rclpy node (rclpy already initialised); None creates one.
        stop: an optional ``threading.Event``: once set, the replay ends after the current message.
    """
    import rclpy

    conns, msgs = _load_bag(Path(bag), cfg.topics)
    own = node is None
    if own:
        rclpy.init()
        node = rclpy.create_node("amodal_seg_replay")
    try:
        pubs = {}
        skipped = []
        for c in conns:
            if c.topic in pubs or (c.topic, c.msgtype) in skipped:
                continue
            cls = import_msg_class(c.msgtype)
            if cls is None:
                skipped.append((c.topic, c.msgtype))
                continue
            pubs[c.topic] = node.create_publisher(cls, c.topic, qos_from_bag(
                c.topic, getattr(c.ext, "offered_qos_profiles", None)))
        if skipped:
            log.warning("skipping %d topic(s) whose message Python module is not importable here: %s",
                        len(skipped), ", ".join(f"{t} ({m})" for t, m in skipped))
        clock_pub = None
        Clock = Time = None
        if cfg.clock:
            from builtin_interfaces.msg import Time
            from rclpy.qos import QoSProfile
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=1))
        counts = {t: 0 for t in pubs}
        msgs = [m for m in msgs if m[0].topic in pubs]
        if not msgs:
            log.warning("nothing to replay")
            return counts
        time.sleep(cfg.start_delay_s)
        if cfg.wait_subscribers > 0:
            t_end = time.monotonic() + cfg.wait_timeout_s
            while any(p.get_subscription_count() < cfg.wait_subscribers for p in pubs.values()):
                if time.monotonic() > t_end:
                    lacking = [t for t, p in pubs.items() if p.get_subscription_count() < cfg.wait_subscribers]
                    log.warning("starting although %s have fewer than %d subscriber(s) after %.0f s",
                                lacking, cfg.wait_subscribers, cfg.wait_timeout_s)
                    break
                time.sleep(0.05)
            time.sleep(0.3)      # graph match precedes the data path by a little
        passes = 0
        while True:
            t0_bag = msgs[0][1]
            t0_wall = time.monotonic()
            for c, t, raw in msgs:
                if stop is not None and stop.is_set():
                    return counts
                due = t0_wall + (t - t0_bag) / 1e9 / cfg.rate
                while True:
                    wait = due - time.monotonic()
                    if wait <= 0:
                        break
                    time.sleep(min(wait, 0.05))
                if clock_pub is not None:
                    clock_pub.publish(Clock(clock=Time(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)))
                pubs[c.topic].publish(raw)
                counts[c.topic] += 1
            passes += 1
            if not cfg.loop or (cfg.max_loops and passes >= cfg.max_loops):
                break
        time.sleep(0.2)      # let the last messages leave
        return counts
    finally:
        if own:
            node.destroy_node()
            rclpy.try_shutdown()
