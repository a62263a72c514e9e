"""The ROS side of the diagnosis: what the node's inputs look like, from its counters and the ROS
graph, as :class:`~ros2_amodal_seg.runtime.doctor.Observations`.

Used by the node's diagnostics timer (:class:`InputDoctor`: a throttled log line per finding and
a ``diagnosis`` value in ``/diagnostics``) and by ``amodal-seg doctor``
(:mod:`ros2_amodal_seg.ros.doctor_cli`), so both say the same. The rules are
:func:`ros2_amodal_seg.runtime.doctor.diagnose` (ROS-free, unit-tested).
"""
from __future__ import annotations

import time

from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from ros2_amodal_seg.runtime import doctor as D


def _policy(value, reliable_or_local, name_true: str, name_false: str) -> str:
    return name_true if value == reliable_or_local else name_false


def qos_spec(profile) -> D.QosSpec:
    """An rclpy ``QoSProfile`` -> :class:`~ros2_amodal_seg.runtime.doctor.QosSpec`."""
    return D.QosSpec(reliability=_policy(profile.reliability, ReliabilityPolicy.RELIABLE, "reliable", "best_effort"),
                     durability=_policy(profile.durability, DurabilityPolicy.TRANSIENT_LOCAL, "transient_local",
                                        "volatile"))


def publishers_of(node, topic: str) -> tuple[D.Endpoint, ...]:
    """The publishers of the fully qualified ``topic`` the ROS graph knows, with type and QoS."""
    out = []
    for info in node.get_publishers_info_by_topic(topic):
        q = qos_spec(info.qos_profile)
        ns = info.node_namespace.rstrip("/")
        out.append(D.Endpoint(node=f"{ns}/{info.node_name}", type=info.topic_type, reliability=q.reliability,
                              durability=q.durability))
    return tuple(out)


def topics_of_type(node, type_name: str) -> tuple[str, ...]:
    """Every topic in the graph that carries ``type_name`` (``sensor_msgs/msg/Image``)."""
    return tuple(sorted(t for t, types in node.get_topic_names_and_types() if type_name in types))


def observe(node, sensors, health, gate, sync, *, timeout_s: float, sync_tolerance_s: float,
            extrinsics_source: str, now: float | None = None) -> D.Observations:
    """The node's inputs as :class:`~ros2_amodal_seg.runtime.doctor.Observations`.

    The ROS graph is asked (publishers, their QoS, topics of the same type) only about inputs
    that brought nothing usable within ``timeout_s``.

    Args:
        node: the rclpy node. sensors: its :class:`~ros2_amodal_seg.ros.sensors.SensorSubscriptions`.
        health, gate, sync: its :class:`Health`, :class:`InputGate`, :class:`FrameSync`.
        timeout_s: an input is fine when something passed its checks this recently [s].
    """
    now = time.monotonic() if now is None else now
    topics = []
    qos = qos_spec(sensors.qos)
    for key, type_name, topic in sensors.inputs:
        resolved = sensors.resolved(topic)
        since_ok = health.accepted[key].since_last(now)
        fine = since_ok <= timeout_s
        mark = health.marks.get(f"qos_incompatible:{resolved}")
        topics.append(D.TopicObservation(
            key=key, topic=resolved, expected_type=type_name, received=health.rates[key].total,
            seconds_since_received=health.rates[key].since_last(now), seconds_since_accepted=since_ok,
            last_refusal=gate.last_refusal.get(key), publishers=None if fine else publishers_of(node, resolved),
            qos=qos, qos_event=mark[1] if mark else "", candidates=() if fine else topics_of_type(node, type_name)))
    pairing = sync.recent_pairing(timeout_s, now)
    return D.Observations(topics=tuple(topics), timeout_s=timeout_s, geometry_source=sensors.geometry_source,
                          sync_tolerance_s=sync_tolerance_s, paired=pairing.paired,
                          missed_offsets_ns=pairing.missed_offsets_ns,
                          missing_transforms=health.recent_mark("no_extrinsics", timeout_s, now) or "",
                          extrinsics_source=extrinsics_source)


class InputDoctor:
    """The node's running diagnosis: call it from the diagnostics timer.

    Args:
        node, sensors, health, gate, sync: as for :func:`observe`.
    """

    def __init__(self, node, sensors, health, gate, sync) -> None:
        self.node, self.sensors, self.health, self.gate, self.sync = node, sensors, health, gate, sync

    def __call__(self, *, timeout_s: float, extrinsics_source: str, now: float | None = None) -> list[D.Finding]:
        """The findings now (none during the first ``timeout_s`` after activation); each is logged as a
        warning, at most once per throttle period per cause and topic."""
        now = time.monotonic() if now is None else now
        if now - self.health.active_since < timeout_s:
            return []
        obs = observe(self.node, self.sensors, self.health, self.gate, self.sync, timeout_s=timeout_s,
                      sync_tolerance_s=self.sync.config.tolerance_s, extrinsics_source=extrinsics_source, now=now)
        findings = D.diagnose(obs)
        for f in findings:
            self.health.warn(f"diagnosis:{f.cause}:{f.topic}", f.text())
        return findings
