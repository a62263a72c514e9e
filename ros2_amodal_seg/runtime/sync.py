"""Pair camera images with the nearest LiDAR sweep: a latest-message cache, not an
exact-time filter.

* Clouds go into a short cache (newest ``cloud_cache_size``), ordered by stamp.
* Images go into a single "pending" slot: a newer image replaces an unprocessed one
  (the replaced frame is counted as a ``superseded`` drop; one pending when the node is
  deactivated counts as ``inactive``). The worker therefore
  always processes the newest frame and the callbacks never block.
* A pending image becomes *ready* once its nearest cloud is decided: a cloud stamped
  at or after the image has arrived, or ``cloud_wait_s`` of wall time has passed.
  It is then paired with the nearest cached cloud within ``tolerance_s``, or with
  none (2-D only).
* A pending image older than ``max_frame_age_s`` (wall time since it arrived) is
  dropped as ``stale``.
* A stamp that jumps backwards by more than ``time_jump_s`` on any input (a bag
  restarting, a simulator reset) clears the caches (counted as ``time_jump``).

Payloads are opaque (the node stores raw messages and converts them in the worker).
Every method takes an optional ``now`` (monotonic seconds) so tests control time.
"""
from __future__ import annotations

import threading
import time
from bisect import insort
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ros2_amodal_seg.errors import ConfigError

#: drop reasons counted by :class:`FrameSync`.
DROP_REASONS: tuple[str, ...] = ("superseded", "stale", "time_jump", "inactive")


@dataclass(frozen=True)
class SyncConfig:
    """Image/cloud pairing (``config/amodal_seg.yaml``: ``sync_*`` parameters).

    Attributes:
        tolerance_s: largest ``|t_image - t_cloud|`` that still pairs [s].
        cloud_wait_s: wall time a pending image waits for a cloud stamped after it [s].
        max_frame_age_s: a pending image older than this (wall time since arrival) is dropped [s].
        cloud_cache_size: clouds kept (newest first).
        time_jump_s: a stamp this much older than the previous one on the same input
            resets the caches [s].
    """

    tolerance_s: float = 0.05
    cloud_wait_s: float = 0.2
    max_frame_age_s: float = 2.0
    cloud_cache_size: int = 10
    time_jump_s: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance_s <= 10.0:
            raise ConfigError(f"tolerance_s must be in [0, 10] s, got {self.tolerance_s}")
        if not 0.0 <= self.cloud_wait_s <= 10.0:
            raise ConfigError(f"cloud_wait_s must be in [0, 10] s, got {self.cloud_wait_s}")
        if not 0.0 < self.max_frame_age_s <= 3600.0:
            raise ConfigError(f"max_frame_age_s must be in (0, 3600] s, got {self.max_frame_age_s}")
        if not 1 <= self.cloud_cache_size <= 1000:
            raise ConfigError(f"cloud_cache_size must be in 1..1000, got {self.cloud_cache_size}")
        if not self.time_jump_s > 0.0:
            raise ConfigError(f"time_jump_s must be > 0, got {self.time_jump_s}")


@dataclass
class ReadyFrame:
    """One image with its paired cloud (or none), handed to the worker.

    Attributes:
        image_stamp_ns: header stamp of the image [ns]. image: its payload.
        receive_time: monotonic time the image arrived [s].
        cloud_stamp_ns / cloud: the nearest cloud within tolerance, or None / None.
        cloud_dt_ns: ``cloud_stamp_ns - image_stamp_ns`` [ns] (0 without cloud).
        camera_info: the latest camera-info payload, or None if none arrived yet.
    """

    image_stamp_ns: int
    image: Any
    receive_time: float
    cloud_stamp_ns: int | None
    cloud: Any
    cloud_dt_ns: int
    camera_info: Any


class FrameSync:
    """Thread-safe latest-message cache (see the module docstring).

    Args:
        config: :class:`SyncConfig` (can be replaced at run time with :meth:`set_config`).
    """

    def __init__(self, *, config: SyncConfig = SyncConfig()) -> None:
        self._cfg = config
        self._cond = threading.Condition()
        self._clouds: list[tuple[int, int, Any]] = []   # (stamp_ns, seq, payload), sorted by stamp
        self._seq = 0
        self._pending: tuple[int, Any, float] | None = None  # (stamp_ns, payload, receive_time)
        self._info: Any = None
        self._last_stamp: dict[str, int] = {}
        self.drops: Counter = Counter({r: 0 for r in DROP_REASONS})
        self.resets = 0
        self.paired = 0
        self.unpaired = 0

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> SyncConfig:
        return self._cfg

    def set_config(self, config: SyncConfig) -> None:
        with self._cond:
            self._cfg = config
            while len(self._clouds) > config.cloud_cache_size:
                self._clouds.pop(0)
            self._cond.notify_all()

    # ------------------------------------------------------------------ input
    def _check_jump(self, topic: str, stamp_ns: int) -> bool:
        """Reset everything when ``topic`` jumps backwards; returns True on a reset."""
        last = self._last_stamp.get(topic)
        if last is not None and stamp_ns < last - int(self._cfg.time_jump_s * 1e9):
            if self._pending is not None:
                self.drops["time_jump"] += 1
            self._pending = None
            self._clouds.clear()
            self._last_stamp.clear()
            self.resets += 1
            self._last_stamp[topic] = stamp_ns
            return True
        self._last_stamp[topic] = max(stamp_ns, last) if last is not None else stamp_ns
        return False

    def add_cloud(self, stamp_ns: int, payload: Any, now: float | None = None) -> bool:
        """Cache a cloud stamped ``stamp_ns`` [ns]; returns True when it reset the caches."""
        stamp_ns = int(stamp_ns)
        with self._cond:
            reset = self._check_jump("cloud", stamp_ns)
            self._seq += 1
            insort(self._clouds, (stamp_ns, self._seq, payload), key=lambda c: (c[0], c[1]))
            while len(self._clouds) > self._cfg.cloud_cache_size:
                self._clouds.pop(0)
            self._cond.notify_all()
            return reset

    def add_image(self, stamp_ns: int, payload: Any, now: float | None = None) -> bool:
        """Make an image the pending frame (replacing, and counting, an unprocessed one);
        returns True when it reset the caches."""
        now = time.monotonic() if now is None else now
        stamp_ns = int(stamp_ns)
        with self._cond:
            reset = self._check_jump("image", stamp_ns)
            if self._pending is not None:
                self.drops["superseded"] += 1
            self._pending = (stamp_ns, payload, now)
            self._cond.notify_all()
            return reset

    def add_camera_info(self, stamp_ns: int, payload: Any, now: float | None = None) -> bool:
        """Keep the latest camera info (intrinsics change rarely; no pairing by stamp)."""
        with self._cond:
            reset = self._check_jump("camera_info", int(stamp_ns))
            self._info = payload
            return reset

    def reset(self, reason: str = "time_jump") -> None:
        """Forget every cached message (a pending image is counted as a drop for ``reason``)."""
        with self._cond:
            if self._pending is not None:
                self.drops[reason] += 1
            self._pending = None
            self._clouds.clear()
            self._last_stamp.clear()
            self.resets += 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ output
    def _nearest_cloud(self, stamp_ns: int) -> tuple[int, Any] | None:
        tol = int(self._cfg.tolerance_s * 1e9)
        best = None
        for s, _, p in self._clouds:
            d = abs(s - stamp_ns)
            if d <= tol and (best is None or d < best[0]):
                best = (d, s, p)
        return None if best is None else (best[1], best[2])

    def _poll(self, now: float) -> tuple[ReadyFrame | None, float | None]:
        """(ready frame or None, seconds until the pending frame may become ready)."""
        if self._pending is None:
            return None, None
        stamp, payload, t_rx = self._pending
        age = now - t_rx
        if age > self._cfg.max_frame_age_s:
            self._pending = None
            self.drops["stale"] += 1
            return None, None
        newest_cloud = self._clouds[-1][0] if self._clouds else None
        decided = newest_cloud is not None and newest_cloud >= stamp
        if not decided and age < self._cfg.cloud_wait_s:
            return None, self._cfg.cloud_wait_s - age
        self._pending = None
        near = self._nearest_cloud(stamp)
        if near is None:
            self.unpaired += 1
            return ReadyFrame(stamp, payload, t_rx, None, None, 0, self._info), None
        self.paired += 1
        return ReadyFrame(stamp, payload, t_rx, near[0], near[1], near[0] - stamp, self._info), None

    def poll(self, now: float | None = None) -> ReadyFrame | None:
        """The ready frame, if any, without blocking (drops it from the cache)."""
        with self._cond:
            return self._poll(time.monotonic() if now is None else now)[0]

    def wait_ready(self, timeout: float) -> ReadyFrame | None:
        """Block up to ``timeout`` seconds for a ready frame (None on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                frame, wait = self._poll(now)
                if frame is not None:
                    return frame
                left = deadline - now
                if left <= 0:
                    return None
                self._cond.wait(min(left, wait) if wait is not None else left)

    def wake(self) -> None:
        """Wake a thread blocked in :meth:`wait_ready` (used when shutting down)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def has_pending(self) -> bool:
        with self._cond:
            return self._pending is not None

    @property
    def num_clouds(self) -> int:
        with self._cond:
            return len(self._clouds)
