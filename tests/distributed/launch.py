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
    """A running mpiexec in a session of its own (`stop` ends it and every rank)."""
    return subprocess.Popen(_command(module, args, ranks), cwd=cwd, env=_environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _descendants(pid):
    """(pid, command name) of every process below `pid`, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append((int(entry), name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child[0])
    return found


def _gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def stop(process, sig=signal.SIGKILL):
    """Send `sig` to mpiexec and to every rank (not to hydra's proxies, which then reap the
    ranks and leave), reap mpiexec, and wait until the ranks are gone (reaped: a resume
    takes a zombie's pid in run.json for a live run)."""
    ranks = [pid for pid, name in _descendants(process.pid) if not name.startswith("hydra")]
    for pid in [process.pid, *ranks]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    out = process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.01)
    return out


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
