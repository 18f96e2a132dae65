"""A stand-in for CuPy on top of NumPy, so CI runs the CUDA device's code paths without a GPU.

It presents the CuPy names needle's backend uses: module-level array functions (wrapped so
their results are stand-in arrays), `lib.stride_tricks.as_strided`, `asnumpy`,
`cuda.runtime.getDeviceCount`, `random` with CuPy's signatures, and arrays answering CuPy's
`.data.ptr`. Every line of the CuPy device (needle/backend_ndarray/ndarray_backend_cuda.py
and the shared xp table) runs against it; only the kernels underneath are NumPy's. It has no
`ElementwiseKernel`, so the fused kernels run their xp references.
"""
import types

import numpy as np


class _Pointer:
    def __init__(self, ptr):
        self.ptr = ptr


class StandInArray(np.ndarray):
    """A NumPy array whose `.data` is CuPy's MemoryPointer-like object."""

    @property
    def data(self):
        return _Pointer(self.__array_interface__["data"][0])


def _wrap(value):
    if isinstance(value, np.ndarray) and not isinstance(value, StandInArray):
        return value.view(StandInArray)
    if isinstance(value, (tuple, list)):
        return type(value)(_wrap(v) for v in value)
    return value


def _wrapped(function):
    def call(*args, **kwargs):
        return _wrap(function(*args, **kwargs))
    call.__name__ = getattr(function, "__name__", "function")
    return call


class _StandInCupy(types.ModuleType):
    """Module-level names: NumPy's functions with stand-in results."""

    def __getattr__(self, name):
        target = getattr(np, name)
        return _wrapped(target) if callable(target) else target


def make_standin():
    cupy = _StandInCupy("cupy")
    cupy.ndarray = StandInArray
    cupy.asnumpy = lambda array: np.array(array).view(np.ndarray)
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    generator = np.random.RandomState(0)
    cupy.random = types.SimpleNamespace(  # CuPy's signatures: dtype as a keyword
        seed=generator.seed,
        rand=lambda *shape, dtype=float: _wrap(generator.random_sample(shape).astype(dtype)),
        randn=lambda *shape, dtype=float: _wrap(generator.standard_normal(shape).astype(dtype)))
    cupy.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
        as_strided=_wrapped(np.lib.stride_tricks.as_strided)))
    return cupy
