"""Process memory settings of the node: large buffers go back to the operating system.

A large message (a 2 M-point cloud is 32 MB) passes through several buffers of its own size
in the middleware before the node can refuse it: the reassembled sample, the serialised
copy the subscription takes, and the Python ``bytes`` object. glibc serves allocations of
that size with ``mmap`` and returns them at ``free`` -- until the first such ``free``: it
then raises its mmap threshold to the freed size (up to 32 MB), and from there on the same
buffers come from the heap, where they fragment it and stay resident. Measured with a
minimal raw subscriber (this repository's loopback profile): the peak resident growth per
32 MB cloud settled at +91 MB and the resident set stayed +60 MB higher; with a fixed
threshold it is +61 MB and the resident set returns to where it was.

:func:`set_mmap_threshold` fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also
turns the dynamic adjustment off). Smaller allocations (images, most tensors) keep coming
from the heap. Fixing it also stops glibc from raising the heap's trim threshold, which then
stays at 128 KiB: the heap top was returned and faulted in again on every frame (4700 page
faults per frame of the shipped model against 300), so the trim threshold is set as well, to
the 64 MiB the dynamic mode would reach. (No rclpy import: the core may call this.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

from ros2_amodal_seg.errors import ConfigError

#: ``M_MMAP_THRESHOLD`` of glibc's ``<malloc.h>``.
M_MMAP_THRESHOLD = -3
#: ``M_TRIM_THRESHOLD``: free memory at the top of the heap above this is returned to the system.
M_TRIM_THRESHOLD = -1
#: the largest threshold glibc accepts on 64-bit systems (``HEAP_MAX_SIZE / 2``) [MiB].
MAX_MMAP_THRESHOLD_MB = 32
#: the trim threshold set with a fixed mmap threshold: twice the largest mmap threshold, where
#: glibc's dynamic mode ends up [bytes].
TRIM_THRESHOLD_BYTES = 2 * MAX_MMAP_THRESHOLD_MB << 20


@dataclass(frozen=True)
class MemoryConfig:
    """Process memory settings (node parameter ``malloc_mmap_threshold_mb``).

    Attributes:
        mmap_threshold_mb: allocations of at least this size are mapped and unmapped at
            once (glibc's ``M_MMAP_THRESHOLD``) [MiB]; 0 = leave glibc's dynamic threshold.
    """

    mmap_threshold_mb: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.mmap_threshold_mb <= MAX_MMAP_THRESHOLD_MB:
            raise ConfigError(f"mmap_threshold_mb must be in 0..{MAX_MMAP_THRESHOLD_MB}, got {self.mmap_threshold_mb}")


def set_mmap_threshold(config: MemoryConfig) -> str:
    """Apply ``config`` to this process; returns what was done, for the log.

    Never raises for a C library without ``mallopt`` (musl, macOS): the setting is then
    reported as not applied.
    """
    if config.mmap_threshold_mb == 0:
        return "malloc mmap threshold: glibc default (dynamic)"
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return f"malloc mmap threshold not set: no mallopt in the C library ({name})"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, config.mmap_threshold_mb << 20) != 1:
        return f"malloc mmap threshold not set: mallopt refused {config.mmap_threshold_mb} MiB"
    if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return (f"malloc mmap threshold: {config.mmap_threshold_mb} MiB; trim threshold not set: mallopt refused "
                f"{TRIM_THRESHOLD_BYTES >> 20} MiB")
    return (f"malloc mmap threshold: {config.mmap_threshold_mb} MiB (large message buffers returned at once), "
            f"trim threshold {TRIM_THRESHOLD_BYTES >> 20} MiB")
