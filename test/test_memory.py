"""runtime/memory.py: the fixed malloc mmap threshold returns large buffers to the system."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.runtime.memory import MemoryConfig, set_mmap_threshold

#: in a fresh interpreter: free a 24 MB buffer (glibc then raises its dynamic threshold to 24 MB),
#: fill and free a 16 MB one, print how much of it stayed resident [MB].
PROBE = textwrap.dedent("""
    import sys
    from ros2_amodal_seg.runtime.memory import MemoryConfig, set_mmap_threshold
    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    print(set_mmap_threshold(MemoryConfig(mmap_threshold_mb=int(sys.argv[1]))), file=sys.stderr)
    a = bytearray(24 << 20); del a
    base = rss_mb()
    b = bytearray(16 << 20); del b
    print(rss_mb() - base)
""")


#: fill and free a 4 MB heap buffer ten times; print the page faults of the ten.
CHURN = textwrap.dedent("""
    import resource, sys
    from ros2_amodal_seg.runtime.memory import MemoryConfig, set_mmap_threshold
    set_mmap_threshold(MemoryConfig(mmap_threshold_mb=int(sys.argv[1])))
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        b = bytearray(4 << 20); del b
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
""")


def _run(code: str, threshold_mb: int) -> float:
    out = subprocess.run([sys.executable, "-c", code, str(threshold_mb)], capture_output=True, text=True,
                         check=True, timeout=60)
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc / procfs")
def test_fixed_threshold_returns_a_freed_large_buffer():
    # glibc's dynamic threshold (0): the 16 MB buffer came from the heap and stays resident
    assert _run(PROBE, 0) > 12.0
    # fixed at 8 MiB: it was mapped, and unmapped at free
    assert _run(PROBE, 8) < 2.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc / procfs")
def test_heap_below_the_threshold_is_not_returned_and_faulted_in_on_every_cycle():
    """A fixed mmap threshold alone leaves glibc's trim threshold at 128 KiB: each free of a
    4 MB heap buffer would return it and the next fill fault its 1024 pages in again."""
    pages = (4 << 20) // 4096
    assert _run(CHURN, 8) < 3 * pages          # faulted in once, then reused


def test_config_range_and_messages():
    assert MemoryConfig().mmap_threshold_mb == 8
    for bad in (-1, 33):
        with pytest.raises(ConfigError, match="mmap_threshold_mb"):
            MemoryConfig(mmap_threshold_mb=bad)
    assert "glibc default" in set_mmap_threshold(MemoryConfig(mmap_threshold_mb=0))
