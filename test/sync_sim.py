"""Drive :class:`~ros2_amodal_seg.runtime.sync.FrameSync` on simulated time: a camera and a
LiDAR stream with transport jitter, and a worker that takes ``proc_s`` per frame and polls
after every delivered message (so the order of callbacks matters wherever the sync lets it).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ros2_amodal_seg.runtime.sync import FrameSync, SyncConfig

T0 = 1_700_000_000_000_000_000


@dataclass
class SimResult:
    sync: FrameSync
    images: list[int]                       # every image stamp sent [ns]
    clouds: list[int]                       # every cloud stamp sent [ns]
    outputs: list[tuple[float, int, int | None]] = field(default_factory=list)  # (done [s], image, cloud)

    def accounted(self) -> int:
        s = self.sync
        return s.paired + s.unpaired + sum(s.drops.values()) + s.num_pending


def simulate(*, cam_hz: float = 30.0, lidar_hz: float = 10.0, offset_ms: float = -2.0, proc_s: float = 0.22,
             duration_s: float = 60.0, jitter_ms: float = 3.0, cloud_first: bool = True, seed: int = 0,
             loop_at_s: float | None = None, config: SyncConfig = SyncConfig()) -> SimResult:
    """Run the streams for ``duration_s`` [s] of simulated time.

    Args:
        offset_ms: cloud stamp minus the image stamp of the same instant [ms] (either sign).
        cloud_first: at equal arrival order keys, deliver the cloud before the image.
        loop_at_s: from this time on every message is stamped ``loop_at_s`` earlier (a bag loop).
    """
    rng = random.Random(seed)
    sync = FrameSync(config=config)
    events = []   # (arrival [s], tie order, kind, stamp [ns])
    images, clouds = [], []
    for i in range(int(duration_s * cam_hz)):
        t = i / cam_hz
        events.append((t + 0.004 + rng.uniform(0.0, jitter_ms) * 1e-3, int(cloud_first), "image",
                       T0 + round(t * 1e9)))
    for j in range(int(duration_s * lidar_hz)):
        t = j / lidar_hz
        events.append((t + 0.004 + rng.uniform(0.0, jitter_ms) * 1e-3, int(not cloud_first), "cloud",
                       T0 + round(t * 1e9) + round(offset_ms * 1e6)))
    if loop_at_s is not None:
        back = round(loop_at_s * 1e9)
        events = [(a, o, k, s - back if a >= loop_at_s else s) for a, o, k, s in events]
    events.sort()
    res = SimResult(sync, images, clouds)
    busy_until = 0.0

    def try_poll(now: float) -> None:
        nonlocal busy_until
        if now >= busy_until:
            f = sync.poll(now=now)
            if f is not None:
                busy_until = now + proc_s
                res.outputs.append((busy_until, f.image_stamp_ns, f.cloud_stamp_ns))

    t, k, end = 0.0, 0, duration_s + 1.0
    while t < end:
        t = min(events[k][0] if k < len(events) else end, max(busy_until, t + 0.001))
        while k < len(events) and events[k][0] <= t:
            arrival, _, kind, stamp = events[k]
            (images if kind == "image" else clouds).append(stamp)
            (sync.add_image if kind == "image" else sync.add_cloud)(stamp, stamp, now=arrival)
            k += 1
            try_poll(arrival)
        try_poll(t)
    return res
