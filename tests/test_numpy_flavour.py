"""The NumPy flavour (NEEDLE_BACKEND=np, the course's hw1/hw2 setting) runs the
flavour-independent suites: ops, nn, optim, autograd and the course apps."""
import os
import subprocess
import sys

import pytest

import needle as ndl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ["tests/needle/ops", "tests/needle/nn", "tests/needle/test_optim.py",
          "tests/needle/test_autograd.py", "tests/apps"]


@pytest.mark.skipif(ndl.backend_selection.BACKEND == "np", reason="already the NumPy flavour")
def test_flavour_independent_suites_pass_with_numpy_arrays():
    env = dict(os.environ, NEEDLE_BACKEND="np")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow",
                             "-p", "no:cacheprovider", *SUITES], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
