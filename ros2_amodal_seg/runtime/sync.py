"""Pair camera images with the nearest LiDAR sweep: a latest-message cache, not an
exact-time filter.

* Clouds go into a short cache (newest ``cloud_cache_size``), ordered by stamp.
* Images go into a short queue of *pending* frames, in arrival order. Each pending image
  has its own deadline: its arrival time plus ``cloud_wait_s``. Newer images never reset
  an older image's wait, so a fast camera cannot starve the worker.
* A pending image is *ready* once its nearest cloud is decided, or its deadline passed.
  The nearest cloud is decided when no cloud still to come can be nearer:

  - a cloud stamped at or after the image is cached (clouds arrive in stamp order), or
  - the LiDAR period is known (median of the last cloud intervals) and the next cloud,
    expected at least half a period after the newest one, would be farther from the
    image than the best cached cloud, or beyond ``tolerance_s``.

  Without a 3-D source (``use_clouds`` false: ``geometry_source: none``) images are ready at
  once. With a depth camera as the 3-D source its depth images take the clouds' place: an
  image is paired with the nearest depth image exactly as with a cloud.

  This rule looks at stamps only, so the pairing does not depend on which callback runs
  first, nor on the sign of the LiDAR-camera stamp offset.
* The worker takes the *newest ready* image; every older pending image is then dropped
  as ``superseded``. Images are paired with the nearest cached cloud within ``tolerance_s``,
  or with none (2-D only). The stamp offset to the nearest cached cloud at any distance is
  recorded either way (:meth:`FrameSync.recent_pairing`): it says by how much an unpaired
  frame missed (the diagnosis reports it).
* A pending image older than ``max_frame_age_s`` (wall time since it arrived) is dropped
  as ``stale``; beyond ``max_pending`` queued images the oldest is ``superseded``.
  One pending when the node is deactivated counts as ``inactive``.
* A stamp that jumps backwards by more than ``time_jump_s`` on any input (a bag
  restarting, a simulator reset) clears the caches (counted as ``time_jump``).

Every image given to :meth:`FrameSync.add_image` therefore ends in exactly one of:
paired, unpaired (2-D) or one drop reason. Payloads are opaque (the node stores
validated messages and converts them in the worker). Every method takes an optional
``now`` (monotonic seconds) so tests drive it on simulated time.
"""
from __future__ import annotations

import threading
import time
from bisect import insort
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ros2_amodal_seg.errors import ConfigError

#: drop reasons counted by :class:`FrameSync`.
DROP_REASONS: tuple[str, ...] = ("superseded", "stale", "time_jump", "inactive")

#: cloud intervals kept to estimate the LiDAR period.
_PERIOD_SAMPLES = 8


@dataclass(frozen=True)
class SyncConfig:
    """Image/cloud pairing (``config/amodal_seg.yaml``: ``sync_*`` parameters).

    Attributes:
        tolerance_s: largest ``|t_image - t_cloud|`` that still pairs [s].
        cloud_wait_s: longest wall time an image waits for its cloud, from its own arrival [s].
        max_frame_age_s: a pending image older than this (wall time since arrival) is dropped [s].
        cloud_cache_size: clouds kept (newest first).
        time_jump_s: a stamp this much older than the previous one on the same input
            resets the caches [s].
        max_pending: images queued while they wait for their cloud (the oldest beyond
            this is superseded).
        use_clouds: pair images with clouds (false: no LiDAR; images are ready at once, 2-D).
    """

    tolerance_s: float = 0.05
    cloud_wait_s: float = 0.2
    max_frame_age_s: float = 2.0
    cloud_cache_size: int = 10
    time_jump_s: float = 0.5
    max_pending: int = 64
    use_clouds: bool = True

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
        if not 1 <= self.max_pending <= 10000:
            raise ConfigError(f"max_pending must be in 1..10000, got {self.max_pending}")


@dataclass
class ReadyFrame:
    """One image with its paired cloud (or none), handed to the worker.

    Attributes:
        image_stamp_ns: header stamp of the image [ns]. image: its payload.
        receive_time: monotonic time the image arrived [s].
        cloud_stamp_ns / cloud: the nearest cloud within tolerance, or None / None.
        cloud_dt_ns: ``cloud_stamp_ns - image_stamp_ns`` [ns] (0 without cloud).
        camera_info: the latest camera-info payload, or None if none arrived yet.
        nearest_dt_ns: ``stamp - image_stamp_ns`` of the nearest cached cloud at any distance [ns]
            (None: no cloud cached): what an unpaired frame missed its cloud by.
    """

    image_stamp_ns: int
    image: Any
    receive_time: float
    cloud_stamp_ns: int | None
    cloud: Any
    cloud_dt_ns: int
    camera_info: Any
    nearest_dt_ns: int | None = None


@dataclass(frozen=True)
class PairingStats:
    """How the recent frames were paired (:meth:`FrameSync.recent_pairing`).

    Attributes:
        paired: frames paired with a cloud.
        missed_offsets_ns: for each frame left unpaired although clouds were cached, the stamp
            offset ``t_cloud - t_image`` of the nearest one [ns] (beyond the tolerance).
        no_cloud: frames left unpaired with no cloud cached at all.
    """

    paired: int = 0
    missed_offsets_ns: tuple[int, ...] = ()
    no_cloud: int = 0


@dataclass
class _Pending:
    stamp_ns: int
    payload: Any
    receive_time: float       # monotonic [s]


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
        self._pending: deque[_Pending] = deque()         # arrival order
        self._info: Any = None
        self._last_stamp: dict[str, int] = {}
        self._cloud_dts: deque[int] = deque(maxlen=_PERIOD_SAMPLES)   # recent cloud intervals [ns]
        self._outcomes: deque[tuple[float, bool, int | None]] = deque(maxlen=64)  # (time, paired, nearest dt)
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
            self._trim_pending()
            self._cond.notify_all()

    # ------------------------------------------------------------------ input
    def _clear(self, reason: str) -> None:
        """Forget every cached message; pending images count as drops for ``reason``."""
        self.drops[reason] += len(self._pending)
        self._pending.clear()
        self._clouds.clear()
        self._last_stamp.clear()
        self._cloud_dts.clear()
        self._outcomes.clear()
        self.resets += 1

    def _check_jump(self, topic: str, stamp_ns: int) -> bool:
        """Reset everything when ``topic`` jumps backwards; returns True on a reset."""
        last = self._last_stamp.get(topic)
        if last is not None and stamp_ns < last - int(self._cfg.time_jump_s * 1e9):
            self._clear("time_jump")
            self._last_stamp[topic] = stamp_ns
            return True
        self._last_stamp[topic] = max(stamp_ns, last) if last is not None else stamp_ns
        return False

    def _trim_pending(self) -> None:
        while len(self._pending) > self._cfg.max_pending:
            self._pending.popleft()
            self.drops["superseded"] += 1

    def add_cloud(self, stamp_ns: int, payload: Any, now: float | None = None) -> bool:
        """Cache a cloud stamped ``stamp_ns`` [ns]; returns True when it reset the caches."""
        stamp_ns = int(stamp_ns)
        with self._cond:
            reset = self._check_jump("cloud", stamp_ns)
            if self._clouds and stamp_ns > self._clouds[-1][0]:
                self._cloud_dts.append(stamp_ns - self._clouds[-1][0])
            self._seq += 1
            insort(self._clouds, (stamp_ns, self._seq, payload), key=lambda c: (c[0], c[1]))
            while len(self._clouds) > self._cfg.cloud_cache_size:
                self._clouds.pop(0)
            self._cond.notify_all()
            return reset

    def add_image(self, stamp_ns: int, payload: Any, now: float | None = None) -> bool:
        """Queue an image as a pending frame; returns True when it reset the caches."""
        now = time.monotonic() if now is None else now
        stamp_ns = int(stamp_ns)
        with self._cond:
            reset = self._check_jump("image", stamp_ns)
            self._pending.append(_Pending(stamp_ns, payload, now))
            self._trim_pending()
            self._cond.notify_all()
            return reset

    def add_camera_info(self, stamp_ns: int, payload: Any, now: float | None = None) -> bool:
        """Keep the latest camera info (intrinsics change rarely; no pairing by stamp)."""
        with self._cond:
            reset = self._check_jump("camera_info", int(stamp_ns))
            self._info = payload
            return reset

    def reset(self, reason: str = "time_jump") -> None:
        """Forget every cached message (pending images are counted as drops for ``reason``)."""
        with self._cond:
            self._clear(reason)
            self._cond.notify_all()

    # ------------------------------------------------------------------ output
    @property
    def cloud_period_ns(self) -> int | None:
        """Median interval of the recent clouds [ns], None before two clouds."""
        with self._cond:
            return self._period_ns()

    def _period_ns(self) -> int | None:
        return int(np.median(self._cloud_dts)) if self._cloud_dts else None

    def _nearest_cloud(self, stamp_ns: int) -> tuple[int, Any] | None:
        tol = int(self._cfg.tolerance_s * 1e9)
        best = None
        for s, _, p in self._clouds:
            d = abs(s - stamp_ns)
            if d <= tol and (best is None or d < best[0]):
                best = (d, s, p)
        return None if best is None else (best[1], best[2])

    def _decided(self, stamp_ns: int) -> bool:
        """True when no cloud still to come can pair with an image stamped ``stamp_ns`` better."""
        if not self._cfg.use_clouds:
            return True
        period = self._period_ns()
        if not self._clouds:
            return False
        newest = self._clouds[-1][0]
        if newest >= stamp_ns:
            return True
        if period is None:
            return False
        next_gap = newest + period // 2 - stamp_ns        # earliest next cloud minus the image [ns]
        if next_gap > int(self._cfg.tolerance_s * 1e9):
            return True
        near = self._nearest_cloud(stamp_ns)
        return near is not None and abs(near[0] - stamp_ns) <= next_gap

    def _poll(self, now: float) -> tuple[ReadyFrame | None, float | None]:
        """(ready frame or None, seconds until the oldest pending frame's wait ends)."""
        while self._pending and now - self._pending[0].receive_time > self._cfg.max_frame_age_s:
            self._pending.popleft()
            self.drops["stale"] += 1
        if not self._pending:
            return None, None
        pick = None
        for k in range(len(self._pending) - 1, -1, -1):   # the newest ready frame
            p = self._pending[k]
            if now - p.receive_time >= self._cfg.cloud_wait_s or self._decided(p.stamp_ns):
                pick = k
                break
        if pick is None:
            oldest = self._pending[0].receive_time
            return None, max(0.0, min(oldest + self._cfg.cloud_wait_s,
                                      oldest + self._cfg.max_frame_age_s) - now) + 1e-4
        for _ in range(pick):
            self._pending.popleft()
            self.drops["superseded"] += 1
        p = self._pending.popleft()
        near = self._nearest_cloud(p.stamp_ns)
        nearest = min((s - p.stamp_ns for s, _, _ in self._clouds), key=abs, default=None)
        self._outcomes.append((now, near is not None, nearest))
        if near is None:
            self.unpaired += 1
            return ReadyFrame(p.stamp_ns, p.payload, p.receive_time, None, None, 0, self._info, nearest), None
        self.paired += 1
        return ReadyFrame(p.stamp_ns, p.payload, p.receive_time, near[0], near[1], near[0] - p.stamp_ns,
                          self._info, nearest), None

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

    def recent_pairing(self, within_s: float, now: float | None = None) -> PairingStats:
        """How the frames taken in the last ``within_s`` seconds were paired (the last 64 at most)."""
        now = time.monotonic() if now is None else now
        with self._cond:
            recent = [o for o in self._outcomes if now - o[0] <= within_s]
        return PairingStats(paired=sum(1 for o in recent if o[1]),
                            missed_offsets_ns=tuple(int(o[2]) for o in recent if not o[1] and o[2] is not None),
                            no_cloud=sum(1 for o in recent if not o[1] and o[2] is None))

    def wake(self) -> None:
        """Wake a thread blocked in :meth:`wait_ready` (used when shutting down)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def has_pending(self) -> bool:
        with self._cond:
            return bool(self._pending)

    @property
    def num_pending(self) -> int:
        with self._cond:
            return len(self._pending)

    @property
    def num_clouds(self) -> int:
        with self._cond:
            return len(self._clouds)
