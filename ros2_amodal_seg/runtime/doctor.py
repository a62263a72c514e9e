"""Why the node gets nothing: from observations of its inputs to findings with a cause and a
hint (no ROS import).

The node's diagnostics timer (``ros2_amodal_seg.ros.doctor``) and ``amodal-seg doctor`` collect
the same :class:`Observations` -- per input topic: messages that arrived, messages that passed
the receipt checks, the last refusal, the publishers the ROS graph knows with their type and
QoS; the stamp offsets of frames left without a cloud / depth image; missing transforms -- and
:func:`diagnose` turns them into :class:`Finding` s. Causes (:data:`CAUSES`):

==================  ==============================================================================
cause               when
==================  ==============================================================================
no_publisher        nothing arrived and no node publishes the topic (the hint lists the topics
                    that carry the expected type: a missing remap)
qos_incompatible    nothing arrived and the publishers offer QoS our subscription cannot match
                    (reliable subscription vs best-effort publisher, transient-local vs volatile);
                    names the publishers and the policy
type_mismatch       nothing arrived and the publishers publish another message type
silent_publisher    compatible publishers, but nothing arrived (driver stopped, bag paused, DDS)
unsupported_encoding  messages arrive but every one is refused for its encoding (names it)
bad_input           messages arrive but every one is refused for another reason (names the kind)
no_camera_info      no usable CameraInfo: no publisher, nothing sent, or every one refused
sync_offset         images and clouds (depth images) arrive, but most frames find none within
                    ``sync_tolerance_s`` of their stamp: reports the measured stamp offset
no_transform        frames miss ``T_base_camera`` / ``T_camera_lidar`` (parameters unset, tf lookup
                    failed)
==================  ==============================================================================

An input counts as fine when a message of it passed its checks within ``timeout_s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

#: every cause :func:`diagnose` reports.
CAUSES: tuple[str, ...] = ("no_publisher", "qos_incompatible", "type_mismatch", "silent_publisher",
                           "unsupported_encoding", "bad_input", "no_camera_info", "sync_offset", "no_transform")
#: what each input is, in words.
INPUT_NAMES: dict[str, str] = {"image": "image", "camera_info": "CameraInfo", "cloud": "point cloud",
                               "depth": "depth image"}


@dataclass(frozen=True)
class Endpoint:
    """A publisher of a topic as the ROS graph reports it.

    Attributes:
        node: fully qualified node name (``/ns/name``). type: message type (``sensor_msgs/msg/Image``).
        reliability: ``reliable`` / ``best_effort``. durability: ``volatile`` / ``transient_local``.
    """

    node: str
    type: str
    reliability: str
    durability: str


@dataclass(frozen=True)
class QosSpec:
    """Our subscription's QoS (``reliable`` / ``best_effort``; ``volatile`` / ``transient_local``)."""

    reliability: str = "best_effort"
    durability: str = "volatile"


def qos_mismatch(pub: Endpoint, sub: QosSpec) -> list[str]:
    """The QoS policies that keep ``pub`` from matching our subscription (empty: compatible).

    A reliable subscription needs a reliable publisher; a transient-local subscription needs a
    transient-local publisher (the request/offer rules of DDS).
    """
    out = []
    if sub.reliability == "reliable" and pub.reliability == "best_effort":
        out.append("RELIABILITY (publisher best_effort, subscription reliable)")
    if sub.durability == "transient_local" and pub.durability == "volatile":
        out.append("DURABILITY (publisher volatile, subscription transient_local)")
    return out


@dataclass(frozen=True)
class TopicObservation:
    """One input topic.

    Attributes:
        key: ``image``, ``camera_info``, ``cloud`` or ``depth``. topic: its resolved name.
        expected_type: the message type we subscribe with.
        received: messages that arrived in all.
        seconds_since_received: since the last arrival [s] (inf: none).
        seconds_since_accepted: since the last message that passed the receipt checks [s] (inf: none).
        last_refusal: ``(kind, detail)`` of the last refused message, or None.
        publishers: the graph's publishers, or None when not asked (the input is fine).
        qos: our subscription's QoS.
        qos_event: the policy of an incompatible-QoS event on our subscription, "" if none.
        candidates: other topics that carry ``expected_type`` (for a missing remap).
    """

    key: str
    topic: str
    expected_type: str
    received: int = 0
    seconds_since_received: float = math.inf
    seconds_since_accepted: float = math.inf
    last_refusal: tuple[str, str] | None = None
    publishers: tuple[Endpoint, ...] | None = None
    qos: QosSpec = field(default_factory=QosSpec)
    qos_event: str = ""
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observations:
    """What the node (or ``amodal-seg doctor``) saw.

    Attributes:
        topics: one :class:`TopicObservation` per subscribed input.
        timeout_s: an input is fine when something of it passed the checks within this [s].
        geometry_source: ``lidar``, ``depth`` or ``none``.
        sync_tolerance_s: the pairing tolerance [s].
        paired: frames paired with a cloud / depth image within the window.
        missed_offsets_ns: per frame left unpaired although clouds were cached within the window:
            the nearest one's offset ``t_cloud - t_image`` [ns].
        missing_transforms: what a frame lacked, e.g. ``"T_base_camera (camera_optical_frame)"``; ""
            when nothing is missing.
        extrinsics_source: ``params`` or ``tf``.
    """

    topics: tuple[TopicObservation, ...]
    timeout_s: float
    geometry_source: str = "lidar"
    sync_tolerance_s: float = 0.05
    paired: int = 0
    missed_offsets_ns: tuple[int, ...] = ()
    missing_transforms: str = ""
    extrinsics_source: str = "params"


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem: ``cause`` (:data:`CAUSES`), the topic (or ``""``), what was seen and
    what to do."""

    cause: str
    topic: str
    message: str
    hint: str

    def text(self) -> str:
        return f"[{self.cause}] {self.message}; hint: {self.hint}"


def _publisher_list(pubs) -> str:
    return ", ".join(f"{p.node} ({p.reliability}, {p.durability})" for p in pubs)


def _topic_finding(t: TopicObservation, timeout_s: float) -> Finding | None:
    name = INPUT_NAMES.get(t.key, t.key)
    is_info = t.key == "camera_info"
    if t.seconds_since_accepted <= timeout_s:
        return None
    if t.seconds_since_received <= timeout_s and t.last_refusal is not None:
        kind, detail = t.last_refusal
        if is_info:
            return Finding("no_camera_info", t.topic, f"every CameraInfo on {t.topic} is refused [{kind}]: {detail}",
                           "publish the camera's calibration (K with positive focal lengths, plumb_bob D); the "
                           "frames are 2-D only until one passes")
        if kind.endswith("_encoding"):
            return Finding("unsupported_encoding", t.topic, f"every {name} on {t.topic} is refused: {detail}",
                           "publish rgb8 / bgr8 / mono8 images (depth: 16UC1 mm or 32FC1 m), e.g. through "
                           "image_proc or the driver's format setting")
        return Finding("bad_input", t.topic, f"every {name} on {t.topic} is refused [{kind}]: {detail}",
                       "see docs/node.md, 'Bad input never kills the node', for what each kind means")
    pubs = t.publishers
    silent = (f"nothing received on {t.topic} for {t.seconds_since_received:.1f} s"
              if math.isfinite(t.seconds_since_received) else f"nothing received on {t.topic}")
    if pubs is not None and not pubs:
        others = [c for c in t.candidates if c != t.topic]
        hint = (f"check the topic name / remapping (-r {t.topic}:=<your topic>)"
                + (f"; topics of type {t.expected_type}: {', '.join(others)}" if others else
                   f"; no topic of type {t.expected_type} exists: is the driver / bag running, on this "
                   "ROS_DOMAIN_ID?"))
        if is_info:
            return Finding("no_camera_info", t.topic, f"no CameraInfo: no publisher on {t.topic}", hint)
        return Finding("no_publisher", t.topic, f"{silent}: no publisher on {t.topic}", hint)
    if pubs:
        wrong = [p for p in pubs if p.type != t.expected_type]
        if wrong and len(wrong) == len(pubs):
            return Finding("type_mismatch", t.topic, f"{silent}: its publishers send {wrong[0].type}, we subscribe "
                                                     f"with {t.expected_type} ({', '.join(p.node for p in wrong)})",
                           "remap the input to a topic of the right type")
        bad = [(p, qos_mismatch(p, t.qos)) for p in pubs]
        bad = [(p, why) for p, why in bad if why]
        if bad and len(bad) == len(pubs):
            return Finding("qos_incompatible", t.topic,
                           f"{silent}: incompatible QoS, policy {bad[0][1][0]}: publisher(s) "
                           f"{_publisher_list(p for p, _ in bad)}",
                           "set the node's qos_reliability: best_effort (the sensor-data profile; it matches "
                           "both) or make the publisher reliable")
    if t.qos_event:
        return Finding("qos_incompatible", t.topic, f"{silent}: incompatible QoS, policy {t.qos_event}",
                       "match the publisher's QoS (qos_reliability, or the publisher's deadline / liveliness)")
    if is_info:
        return Finding("no_camera_info", t.topic, f"no CameraInfo: {silent} although "
                                                  f"{len(pubs or ())} publisher(s) exist",
                       "is the camera driver publishing camera_info (a bag recorded without it)?")
    return Finding("silent_publisher", t.topic,
                   f"{silent} although {len(pubs or ())} publisher(s) exist"
                   + (f" ({_publisher_list(pubs)})" if pubs else ""),
                   "is the driver / bag running (paused, stopped)? DDS settings of both sides "
                   "(ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE, the RMW) must agree")


def diagnose(obs: Observations) -> list[Finding]:
    """Findings for ``obs``, one per cause and topic, inputs first (empty: nothing wrong)."""
    out = [f for f in (_topic_finding(t, obs.timeout_s) for t in obs.topics) if f is not None]
    by_key = {t.key: t for t in obs.topics}
    geo = "depth" if obs.geometry_source == "depth" else "cloud"
    geo_t = by_key.get(geo)
    if (obs.geometry_source != "none" and len(obs.missed_offsets_ns) > obs.paired and geo_t is not None
            and not any(f.topic == geo_t.topic for f in out)):
        offs = sorted(obs.missed_offsets_ns)
        med = offs[len(offs) // 2] / 1e9
        what = INPUT_NAMES[geo]
        out.append(Finding(
            "sync_offset", geo_t.topic,
            f"images and {what}s arrive but no {what} is within sync_tolerance_s = {obs.sync_tolerance_s:g} s "
            f"of an image: the nearest is {med * 1e3:+.0f} ms away (t_{geo} - t_image, median of {len(offs)} "
            f"frame(s), from {offs[0] / 1e6:+.0f} to {offs[-1] / 1e6:+.0f} ms); frames are 2-D only",
            f"synchronise the sensors' clocks (chrony / PTP) or their header stamps; if the offset is real "
            f"and steady, raise sync_tolerance_s above {abs(med):.3g} s"))
    if obs.missing_transforms:
        src = ("tf2 (lookups failed, parameters not set)" if obs.extrinsics_source == "tf" else "parameters")
        out.append(Finding(
            "no_transform", "", f"frames miss {obs.missing_transforms}: extrinsics from {src}; frames are "
                                "fused partially (2-D only without T_base_camera)",
            "publish the transforms on /tf_static (e.g. robot_state_publisher, static_transform_publisher) or "
            "set the node's T_base_camera / T_camera_lidar parameters (16 floats row-major)"))
    return out


def summary(findings: list[Finding]) -> str:
    """One line for ``/diagnostics`` (``diagnosis``): ``"ok"`` or ``cause topic; cause topic``."""
    if not findings:
        return "ok"
    return "; ".join(f"{f.cause} {f.topic}".strip() for f in findings)


def format_report(findings: list[Finding], header: str = "") -> str:
    """Human-readable report (``amodal-seg doctor``)."""
    lines = [header] if header else []
    if not findings:
        lines.append("no problem found: every input arrived and passed its checks")
    for f in findings:
        lines.append(f"[{f.cause}] {f.message}")
        lines.append(f"    hint: {f.hint}")
    return "\n".join(lines)
