"""Shared timing helpers: interleaved runs, medians, the machine's GEMM peak.

Two-thread timings swing between processes, so needle and PyTorch are timed in the same
process, alternating, and the median of the repeats is reported.
"""
import platform
import statistics
import time

import numpy as np


def interleaved_medians(functions, repeat=7, warmup=2):
    """Median seconds per call of each function, calls alternating between them."""
    for fn in functions:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in functions]
    for _ in range(repeat):
        for fn, times in zip(functions, samples):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]


def gemm_peak_gflops(n=2048, repeat=5):
    """float32 GEMM GFLOP/s of NumPy's BLAS on this machine (best of `repeat`)."""
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2 * n ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine():
    import os
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__}


def try_import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch
