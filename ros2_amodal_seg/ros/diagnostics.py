"""``diagnostic_msgs/DiagnosticArray`` of the node: input rates, drops, bad-input
counters, per-stage latency (p50/p95) and the device.

The status level and values come from :mod:`ros2_amodal_seg.runtime.health` (plain numbers,
unit-tested without ROS spinning); this module only builds the message.
"""
from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ros2_amodal_seg.ros.conversions import make_header

from ros2_amodal_seg.runtime.health import ERROR, OK, WARN, diagnostic_level  # noqa: F401 (re-exported)


def _kv(k: str, v) -> KeyValue:
    if isinstance(v, float):
        v = "nan" if math.isnan(v) else f"{v:.3f}"
    return KeyValue(key=str(k), value=str(v))


def build_diagnostics(stamp_ns: int, node_name: str, level: int, message: str, values: dict,
                      latency: dict[str, dict[str, float]], hardware_id: str = "") -> DiagnosticArray:
    """Two statuses: ``<node>: pipeline`` (rates, counters, ...) and ``<node>: latency``
    (``<stage>.p50_ms`` / ``<stage>.p95_ms`` / ``<stage>.max_ms`` / ``<stage>.n``)."""
    main = DiagnosticStatus(level=bytes([int(level)]), name=f"{node_name}: pipeline", message=message, hardware_id=hardware_id,
                            values=[_kv(k, v) for k, v in values.items()])
    lat_vals = []
    for stage, s in latency.items():
        lat_vals += [_kv(f"{stage}.p50_ms", float(s["p50"])), _kv(f"{stage}.p95_ms", float(s["p95"])),
                     _kv(f"{stage}.max_ms", float(s["max"])), _kv(f"{stage}.n", int(s["n"]))]
    lat = DiagnosticStatus(level=bytes([OK]), name=f"{node_name}: latency", message="per-stage latency [ms]",
                           hardware_id=hardware_id, values=lat_vals)
    return DiagnosticArray(header=make_header(stamp_ns, ""), status=[main, lat])


def diagnostics_to_dict(msg: DiagnosticArray) -> dict[str, dict]:
    """``{status name: {"level", "message", "values": {key: value}}}`` (tests, demo)."""
    return {s.name: {"level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                     "message": s.message, "values": {kv.key: kv.value for kv in s.values}} for s in msg.status}
