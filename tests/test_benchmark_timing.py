"""benchmarks.timing: interleaved_medians (who is called when, which calls are timed) and the
machine record's BLAS kernels."""
import itertools
import json
import os
import platform
import subprocess
import sys

import pytest

from benchmarks.timing import interleaved_medians

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_each_timed_call_follows_a_settle_call_of_the_same_function():
    log, ticks = [], itertools.count()

    def clock():  # one tick per clock read: a timed call lasts exactly the ticks it reads
        return next(ticks)

    def maker(name, cost):
        def fn():
            log.append(name)
            for _ in range(cost):
                clock()
        return fn

    medians = interleaved_medians([maker("a", 3), maker("b", 5)], repeat=2, warmup=1,
                                  clock=clock)
    assert log == ["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"]
    assert medians == [4, 6]  # the function's own clock reads plus the end read


def test_settle_zero_alternates_strictly():
    log = []
    interleaved_medians([lambda: log.append("a"), lambda: log.append("b")], repeat=2,
                        warmup=0, settle=0)
    assert log == ["a", "b", "a", "b"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS's x86 "
                    "kernel names")
@pytest.mark.parametrize("coretype", ["Nehalem", "Sandybridge"])
def test_machine_names_the_blas_kernels_that_ran(coretype):
    """OPENBLAS_CORETYPE pins OpenBLAS's kernels when it loads: the record must say which
    ran (a fresh interpreter, since this one loaded its kernels already)."""
    import numpy as np
    if not any("openblas" in str(value).lower() for value in np.show_config("dicts")
               ["Build Dependencies"]["blas"].values()):
        pytest.skip("NumPy is not built with OpenBLAS")
    script = "import json; from benchmarks.timing import machine; print(json.dumps(machine()))"
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    blas = json.loads(out)["blas"]
    openblas = [row for row in blas if row["library"] == "openblas"]
    assert openblas and openblas[0]["kernels"] == coretype
    assert openblas[0]["OPENBLAS_CORETYPE"] == coretype
