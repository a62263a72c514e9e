"""The node's health without ROS: event counters, throttled warnings, latency and rates, and
the values and level of its ``/diagnostics`` status.

The node owns one :class:`Health`; its callbacks, the input checks
(:class:`~ros2_amodal_seg.runtime.inputs.InputGate`), the frame assembly
(:class:`~ros2_amodal_seg.runtime.frames.FrameAssembler`) and the worker report through it;
:meth:`Health.report` gives what ``ros.diagnostics.build_diagnostics`` turns into a message.
The level rules (:func:`diagnostic_level`) are plain functions, unit-tested without ROS.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ros2_amodal_seg.runtime.stats import EventCounters, LatencyStats, RateMeter, Throttle

#: status levels as ints (DiagnosticStatus stores them as one byte).
OK, WARN, ERROR = 0, 1, 2
#: the inputs whose arrival is timed (``depth``: a depth image, ``geometry_source: depth``).
INPUTS: tuple[str, ...] = ("image", "camera_info", "cloud", "depth")


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


@dataclass
class Report:
    """One ``/diagnostics`` report: the main status and the per-stage latency."""

    level: int
    message: str
    values: dict
    latency: dict


class Health:
    """Counters, warnings, latency and rates of the node (thread-safe).

    Args:
        counters: the counter names reported even while zero.
        log_warning: ``log_warning(text)``, the node's logger.
        throttle_s: the same warning key is logged at most once per this many seconds.
    """

    def __init__(self, counters: tuple[str, ...], log_warning: Callable[[str], None], throttle_s: float = 5.0) -> None:
        self.counters = EventCounters(counters)
        self.latency = LatencyStats(window=300)
        self.rates = {k: RateMeter(5.0) for k in INPUTS + ("output",)}       # every arrival
        self.accepted = {k: RateMeter(5.0) for k in INPUTS}                   # arrivals that passed the checks
        self.marks: dict[str, tuple[float, str]] = {}                         # event -> (monotonic time, detail)
        self._log = log_warning
        self._throttle = Throttle(throttle_s)
        self._lock = threading.Lock()
        self._since = {"bad": 0, "in": 0, "out": 0}
        self.frames_out = 0
        self.active_since = time.monotonic()

    def warn(self, key: str, text: str) -> None:
        """A warning, at most once per throttle period for ``key``."""
        if self._throttle.ready(key):
            self._log(text)

    def bad(self, counter: str, text: str, n: int = 1) -> None:
        """Count ``n`` bad inputs under ``counter`` and warn (throttled), naming the counter."""
        total = self.counters.inc(counter, n)
        self.flag_bad()
        self.warn(counter, f"{text} [{counter}: {total}]")

    def flag_bad(self) -> None:
        """One bad input since the last report (the report's level turns WARN)."""
        with self._lock:
            self._since["bad"] += 1

    def frame_in(self) -> None:
        with self._lock:
            self._since["in"] += 1

    def frame_out(self) -> None:
        self.rates["output"].tick()
        with self._lock:
            self._since["out"] += 1
            self.frames_out += 1

    def accept(self, key: str) -> None:
        """An input message of ``key`` passed its receipt check."""
        self.accepted[key].tick()

    def mark(self, event: str, detail: str = "") -> None:
        """Remember when ``event`` last happened (and what), for the diagnosis (``runtime.doctor``)."""
        self.marks[event] = (time.monotonic(), detail)

    def recent_mark(self, event: str, within_s: float, now: float) -> str | None:
        """The detail of ``event`` if it happened within the last ``within_s`` seconds, else None."""
        m = self.marks.get(event)
        return m[1] if m is not None and now - m[0] <= within_s else None

    def seconds_since(self, key: str, now: float) -> float:
        """Seconds since ``key`` last arrived, or since activation if later."""
        return min(self.rates[key].since_last(now), now - self.active_since)

    def report(self, *, active: bool, model_loaded: bool, input_timeout_s: float, values: dict,
               sync=None, now: float | None = None) -> Report:
        """The report of this period (resets the per-period counts).

        Args:
            values: the node's own entries (device, extrinsics source, ...), first in the report.
            sync: the :class:`~ros2_amodal_seg.runtime.sync.FrameSync` (pairing and drops).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            since, self._since = self._since, {"bad": 0, "in": 0, "out": 0}
            frames_out = self.frames_out
        level, message = diagnostic_level(
            active=active, model_loaded=model_loaded, seconds_since_image=self.seconds_since("image", now),
            input_timeout_s=input_timeout_s, frames_in=since["in"], frames_out=since["out"],
            recent_bad_input=since["bad"])
        out = dict(values)
        out.update({f"{k}_rate_hz": self.rates[k].rate(now) for k in INPUTS + ("output",)})
        out.update({"images_received": self.rates["image"].total, "camera_infos_received":
                    self.rates["camera_info"].total, "clouds_received": self.rates["cloud"].total,
                    "depth_images_received": self.rates["depth"].total, "frames_processed": frames_out})
        if sync is not None:
            drops = dict(sync.drops)
            out.update({"frames_paired": sync.paired, "frames_unpaired": sync.unpaired,
                        "frames_pending": sync.num_pending, **{f"dropped_{k}": v for k, v in drops.items()},
                        "dropped_total": sum(drops.values())})
        out.update(self.counters.snapshot())
        return Report(level, message, out, self.latency.summary())
