"""Shared test configuration: hypothesis profile, the device fixture, CI's skip policy."""
import os

from hypothesis import HealthCheck, settings

# The `device` fixture hands out shared, immutable device objects, so reusing it across
# hypothesis examples is safe (hence function_scoped_fixture is not a problem here).
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=25, deadline=None,
                          suppress_health_check=_SUPPRESSED)
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=_SUPPRESSED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import needle as ndl  # noqa: E402
import pytest  # noqa: E402

# Under CI=true, skips for a missing PyTorch or native build fail (tests/support/ci_skips.py);
# every run ends with the skip reasons and their counts.
from tests.support.ci_skips import (  # noqa: E402,F401
    pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary)

if ndl.backend_selection.BACKEND == "np":
    # The NumPy flavour (NEEDLE_BACKEND=np): one device, NumPy arrays as Tensor data.
    # tests/test_numpy_flavour.py runs the flavour-independent tests this way.
    DEVICES = [ndl.cpu()]
    collect_ignore_glob = ["needle/backend_ndarray/*"]

    def _device_id(device):
        return "numpy-flavour"
else:
    from needle.backend_ndarray import BackendDevice
    from needle.backend_ndarray.ndarray_backend_cuda import make_cuda_backend
    from needle.backend_ndarray.ndarray_backend_numpy import make_numpy_backend

    from tests.support.cupy_standin import make_standin

    # The CUDA device's code over a NumPy stand-in for CuPy: runs everywhere, no GPU needed.
    CUDA_STANDIN = BackendDevice("cuda", make_cuda_backend(make_standin()))

    # Every device-parameterised test runs on each of these. cpu() is the course's
    # flat-memory device (composition path); cpu_numpy() the NumPy fast path; the stand-in
    # runs the CuPy device's code paths.
    DEVICES = [ndl.cpu_numpy(), ndl.cpu(), CUDA_STANDIN]
    _IDS = {id(CUDA_STANDIN): "cuda-standin"}

    NATIVE_CPU = not hasattr(ndl.cpu().mod, "xp")
    if NATIVE_CPU:
        # cpu() is the C++ module: keep its NumPy fallback (what cpu() is without a compiler)
        # under test too. Named "cpu" like cpu(), so str(device) and golden files match.
        CPU_NUMPY_FLAT = BackendDevice("cpu", make_numpy_backend("cpu"), fast=False)
        DEVICES.insert(2, CPU_NUMPY_FLAT)
        _IDS[id(CPU_NUMPY_FLAT)] = "cpu-numpy-flat"

    if ndl.cuda().enabled():
        # A real GPU: every device-parameterised test also runs on CuPy (`pytest -m gpu`).
        DEVICES.append(pytest.param(ndl.cuda(), marks=pytest.mark.gpu, id="cuda"))

    def _device_id(device):
        return _IDS.get(id(device), str(device))


@pytest.fixture(params=DEVICES, ids=_device_id)
def device(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    """Tests marked `nd_only` check NDArray-flavour behaviour; skip them under NEEDLE_BACKEND=np."""
    if ndl.backend_selection.BACKEND != "np":
        return
    skip = pytest.mark.skip(reason="NDArray flavour only (NEEDLE_BACKEND=nd)")
    for item in items:
        if "nd_only" in item.keywords:
            item.add_marker(skip)
