"""Keep numpy's OpenBLAS single-threaded while a frame is rendered.

The renderer's matrix products are tiny (``[N, 3] @ [3, 3]``); with OpenBLAS's thread
pool they gain nothing, and its worker threads spin while waiting, which cost ~40 % of a
frame's CPU time on a loaded 2-core machine. OpenBLAS splits a product over output rows
and columns only (never over the summed dimension), so the numbers are the same with one
thread. The limit is thread-local (``openblas_set_num_threads_local``) where the library
has it, so other threads of the process are unaffected; where numpy does not use a
compatible OpenBLAS this is a no-op.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os

_SETTER = None          # ctypes function int(int) returning the previous thread count, or False


def _find_setter():
    global _SETTER
    if _SETTER is not None:
        return _SETTER
    _SETTER = False
    try:
        import numpy as np

        base = os.path.dirname(os.path.dirname(np.__file__))
        libs = sorted(glob.glob(os.path.join(base, "numpy.libs", "*openblas*.so*"))) + \
            sorted(glob.glob(os.path.join(base, "numpy", ".dylibs", "*openblas*")))
        if not libs and os.path.exists("/proc/self/maps"):        # e.g. a distribution's numpy
            with open("/proc/self/maps") as f:
                libs = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
        for path in libs:
            lib = ctypes.CDLL(path)
            fn = getattr(lib, "openblas_set_num_threads_local", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = ctypes.c_int
                _SETTER = fn
                break
    except Exception:                                       # pragma: no cover - exotic builds
        _SETTER = False
    return _SETTER


@contextlib.contextmanager
def single_thread_blas():
    """Context manager: numpy's OpenBLAS uses one thread in the calling thread meanwhile."""
    fn = _find_setter()
    if not fn:
        yield
        return
    prev = fn(1)
    try:
        yield
    finally:
        fn(prev)
