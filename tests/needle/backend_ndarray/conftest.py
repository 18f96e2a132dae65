"""Fixtures of the native module's tests: a forced GEMM variant, a forced thread count."""
import pytest

try:
    from needle.backend_ndarray import ndarray_backend_cpu as native
except ImportError:
    native = None

#: the GEMM variants this CPU runs, widest first (none without the native module)
ISAS = [] if native is None else [
    name for name, available in [("avx512", native.__avx512__), ("avx2", native.__avx2__),
                                 ("baseline", True)] if available]


@pytest.fixture(params=ISAS)
def isa(request):
    """The GEMM variant forced for the test, the previous choice restored after."""
    before = native.gemm_isa()
    native.set_gemm_isa(request.param)
    assert native.gemm_isa() == request.param
    yield request.param
    native.set_gemm_isa(before)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """The native pool's thread count forced for the test, the default restored after."""
    default = native.num_threads()
    native.set_num_threads(request.param)
    yield request.param
    native.set_num_threads(default)
