"""Run-time statistics of the node: per-stage latency percentiles, input/output rates
and event counters (bad input, drops). Thread-safe, no ROS import.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

from ros2_amodal_seg.errors import ConfigError


def percentile(values, q: float) -> float:
    """``q``-th percentile (0..100, linear interpolation) of ``values``; NaN when empty."""
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0:
        return float("nan")
    return float(np.percentile(a, q))


class LatencyStats:
    """Rolling window of per-stage durations [ms].

    Args:
        window: samples kept per stage (the newest).
    """

    def __init__(self, window: int = 200) -> None:
        if window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self._lock = threading.Lock()
        self._data: dict[str, deque] = {}

    def add(self, stage: str, ms: float) -> None:
        """Record one duration of ``stage`` [ms] (non-finite values are ignored)."""
        if not np.isfinite(ms):
            return
        with self._lock:
            self._data.setdefault(stage, deque(maxlen=self.window)).append(float(ms))

    def add_many(self, timings_ms: dict[str, float], prefix: str = "") -> None:
        for k, v in timings_ms.items():
            self.add(prefix + k, v)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{stage: {"p50", "p95", "mean", "max", "n"}}`` in ms, stages in insertion order."""
        with self._lock:
            data = {k: list(v) for k, v in self._data.items()}
        return {k: {"p50": percentile(v, 50), "p95": percentile(v, 95), "mean": float(np.mean(v)),
                    "max": float(np.max(v)), "n": len(v)} for k, v in data.items() if v}

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class RateMeter:
    """Events per second over a sliding wall-time window.

    Args:
        window_s: length of the window [s].
    """

    def __init__(self, window_s: float = 5.0) -> None:
        if not window_s > 0:
            raise ConfigError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._lock = threading.Lock()
        self._t: deque = deque()
        self.total = 0
        self.last_time: float | None = None

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._t.append(now)
            self.total += 1
            self.last_time = now
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._t and self._t[0] < now - self.window_s:
            self._t.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events/s in the window: (events - 1) / (their time span); 0 with fewer than 2."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._t) < 2:
                return 0.0
            span = self._t[-1] - self._t[0]
            return (len(self._t) - 1) / span if span > 0 else 0.0

    def since_last(self, now: float | None = None) -> float:
        """Seconds since the last event (inf when none yet)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return float("inf") if self.last_time is None else now - self.last_time


class EventCounters:
    """Named counters (bad input kinds, drops, ...), thread-safe."""

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._c: Counter = Counter({n: 0 for n in names})

    def inc(self, name: str, n: int = 1) -> int:
        with self._lock:
            self._c[name] += int(n)
            return self._c[name]

    def get(self, name: str) -> int:
        with self._lock:
            return int(self._c[name])

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: int(v) for k, v in self._c.items()}


class Throttle:
    """Allow one event per ``period_s`` per key (for throttled warnings)."""

    def __init__(self, period_s: float = 5.0) -> None:
        self.period_s = float(period_s)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ready(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is None or now - last >= self.period_s:
                self._last[key] = now
                return True
            return False
