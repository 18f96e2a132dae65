"""The pytest side of the multi-process tests: start `mpiexec -n N python -m MODULE ARGS`.

Skips (with the reason) where mpi4py is missing, through pytest.importorskip, so that under
CI=true the skip is an error (tests/support/ci_skips.py; .ci/run installs mpich and mpi4py).
A missing mpiexec next to mpi4py skips the same way outside CI and fails under CI.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.support.ci_skips import ci_enforced

__all__ = ["mpiexec", "run_ranks", "start_ranks", "stop"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mpiexec():
    """The mpiexec to launch with: the one beside this Python (the mpich wheel puts it
    there), else the first on PATH; skips or, under CI, fails without one."""
    pytest.importorskip("mpi4py", reason="needs mpi4py: pip install 'needle-gan[distributed]'")
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        why = "mpi4py is installed but no mpiexec was found: pip install mpich"
        if ci_enforced():
            pytest.fail(why)
        pytest.skip(why)
    return found


def _command(module, args, ranks):
    return [mpiexec(), "-n", str(ranks), sys.executable, "-m", module, *map(str, args)]


def _environment():
    # One BLAS thread per rank: two ranks on two cores, no oversubscription.
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def start_ranks(module, *args, ranks=2, cwd=ROOT):
    """A running mpiexec (its own process group, so `stop` ends every rank)."""
    return subprocess.Popen(_command(module, args, ranks), cwd=cwd, env=_environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def stop(process, sig=signal.SIGKILL):
    """Send `sig` to mpiexec and every rank, then reap them."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    return process.communicate(timeout=60)


def run_ranks(module, *args, ranks=2, timeout=180, cwd=ROOT):
    """(returncode, stdout, stderr, seconds) of a finished run; fails the test when it is
    still running after `timeout` seconds (then every rank is killed)."""
    started = time.monotonic()
    process = start_ranks(module, *args, ranks=ranks, cwd=cwd)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = stop(process)
        pytest.fail(f"mpiexec -n {ranks} python -m {module} still running after {timeout} s;"
                    f" stderr:\n{err[-3000:]}")
    return process.returncode, out, err, time.monotonic() - started
