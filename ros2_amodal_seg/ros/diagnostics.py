"""``diagnostic_msgs/DiagnosticArray`` of the node: input rates, drops, bad-input
counters, per-stage latency (p50/p95) and the device.

The status level is derived from plain numbers (:func:`diagnostic_level`) so the
rules are unit-tested without ROS spinning.
"""
from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ros2_amodal_seg.ros.conversions import make_header

#: status levels as ints (DiagnosticStatus stores them as one byte).
OK, WARN, ERROR = 0, 1, 2


def diagnostic_level(*, active: bool, model_loaded: bool, seconds_since_image: float, input_timeout_s: float,
                     frames_in: int, frames_out: int, recent_bad_input: int) -> tuple[int, str]:
    """``(level, message)`` of the node's main status.

    ERROR: active without a model. WARN: no image for ``input_timeout_s``, bad input since
    the last report, or fewer than half of the received frames processed. OK otherwise.
    """
    if active and not model_loaded:
        return ERROR, "active but the model is not loaded"
    if not active:
        return OK, "inactive (lifecycle)"
    if seconds_since_image > input_timeout_s:
        what = "no image received yet" if math.isinf(seconds_since_image) else \
            f"no image for {seconds_since_image:.1f} s"
        return WARN, what
    if recent_bad_input:
        return WARN, f"{recent_bad_input} bad input message(s) since the last report"
    if frames_in >= 10 and frames_out < 0.5 * frames_in:
        return WARN, f"processing {frames_out}/{frames_in} frames (input faster than the model)"
    return OK, "running"


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
