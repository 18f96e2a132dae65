"""Shared timing helpers: interleaved runs, medians, the machine's GEMM peak.

Two-thread timings swing between processes, so needle and PyTorch are timed in the same
process, alternating (each timed call after one untimed call of the same framework, so
neither pays for the other's spinning threads), and the median of the repeats is reported.
"""
import os
import platform
import statistics
import time

import numpy as np


#: wall: elapsed time; cpu: this process's CPU time (steady on a busy machine, but only
#: meaningful for one-threaded runs: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_medians(functions, repeat=7, warmup=2, clock=time.perf_counter, settle=1):
    """Median seconds per call of each function, calls alternating between them.

    Before each timed call the function runs `settle` untimed calls: a framework's worker
    threads keep spinning for a while after its last call (OpenBLAS's, PyTorch's OpenMP
    pool), and on a 2-core machine they take a core from the *next* framework's first
    call. Measured on the DCGAN step (2 threads): timed straight after needle's step,
    PyTorch's step took 216 ms; after one of its own, 150 ms (its own-process figure: 166).
    settle=0 gives the old strict alternation.

    `clock=time.process_time` counts only this process's CPU time: steadier on a busy machine,
    but meaningful only for one-threaded runs (it sums the time of all threads).
    """
    for fn in functions:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in functions]
    for _ in range(repeat):
        for fn, times in zip(functions, samples):
            for _ in range(settle):
                fn()
            start = clock()
            fn()
            times.append(clock() - start)
    return [statistics.median(times) for times in samples]


def gemm_peak_gflops(n=2048, repeat=5, clock=time.perf_counter):
    """float32 GEMM GFLOP/s of NumPy's BLAS on this machine (best of `repeat`)."""
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    best = min(_timed(lambda: a @ b, clock) for _ in range(repeat))
    return 2 * n ** 3 / best / 1e9


def _timed(fn, clock=time.perf_counter):
    start = clock()
    fn()
    return clock() - start


def peak_rss_mb():
    """This process's peak resident memory in MiB.

    Linux's VmHWM belongs to the process image, so it starts afresh at exec; ru_maxrss
    (the fallback elsewhere) carries over the parent's peak when the parent was larger.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine():
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas_in_use()}


def blas_in_use():
    """The BLAS libraries loaded in this process (NumPy's, and PyTorch's once imported):
    library, version, threads and kernels. An OPENBLAS_CORETYPE in the environment pins
    OpenBLAS's kernels (this machine's pins Haswell's AVX2 ones), so the row says which ran."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "not recorded: pip install threadpoolctl (in needle's test extra)"
    return [{"library": info["internal_api"], "version": info["version"],
             "threads": info["num_threads"], "kernels": info.get("architecture"),
             "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
            for info in threadpool_info() if info["user_api"] == "blas"]


def try_import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch
