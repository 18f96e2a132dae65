"""Devices: a name plus a flat-memory backend table (COURSE_API.md section 10.1).

`cpu_numpy()` (the default) and `cuda()` are the same NumPy/CuPy code, and also offer `xp`
so NDArray can run whole-array fast paths. `cpu()` is the course's flat-memory device: the
native C++ module when it is built, otherwise the same table over NumPy without fast paths.
"""
import functools
import importlib
import logging
import os
import warnings

import numpy as np

from .ndarray_backend_cuda import INSTALL_HINT, load_cupy, make_cuda_backend
from .ndarray_backend_numpy import make_numpy_backend

__all__ = ["BackendDevice", "cpu", "cpu_numpy", "cuda", "default_device", "all_devices"]

log = logging.getLogger(__name__)


class BackendDevice:
    """A device wrapping a backend table; unknown attributes forward to the table."""

    def __init__(self, name, mod, fast=True):
        self.name = name
        self.mod = mod
        self.xp = getattr(mod, "xp", None) if fast else None
        self.random = None  # an on-device generator (see use_device_rng), or NumPy's global

    def __eq__(self, other):
        return isinstance(other, BackendDevice) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return self.name + "()"

    def __getattr__(self, name):
        """Forward to the backend table. Without one (cuda() with no CuPy), a name the table
        would have raises the "install CuPy" error; any other name is an AttributeError, as
        Python's protocols expect (pytest's collection asks every parametrize value for
        `__name__`)."""
        mod = self.__dict__.get("mod")
        if name.startswith("__") and name not in _FORWARDED_DUNDERS:
            # a module's own __name__, __file__, ... are not the device's
            raise AttributeError(f"{self.__dict__.get('name')}() has no attribute {name!r}")
        if mod is None:
            if name in _TABLE_NAMES:
                raise RuntimeError(f"{self.__dict__.get('name')}() is not available: "
                                   f"{INSTALL_HINT}")
            raise AttributeError(f"{self.__dict__.get('name')}() has no attribute {name!r}")
        return getattr(mod, name)

    def enabled(self):
        return self.mod is not None

    def _from_host(self, host):
        from .ndarray import NDArray
        return NDArray(host, device=self, dtype=str(host.dtype))

    def use_device_rng(self, enabled=True):
        """cuda() only: draw rand/randn (init, dropout) with CuPy's generator on the GPU
        (seed it with `cupy.random.seed`) instead of NumPy's global RNG on the host, which
        gives the course's values on every device and stays the default. Returns the device.
        """
        if self.name != "cuda" or self.xp is None:
            raise ValueError(f"use_device_rng: only an available cuda() device has its own "
                             f"generator, not {self!r}")
        self.random = self.xp.random if enabled else None
        return self

    def rand(self, *shape, dtype="float32"):
        """Uniform [0, 1) from NumPy's global RNG on the host (course golden values), or
        from the device's own generator after `use_device_rng()`."""
        if self.random is not None:
            return self._adopt(self.random.rand(*shape, dtype=dtype))
        return self._from_host(np.random.rand(*shape).astype(dtype))

    def randn(self, *shape, dtype="float32"):
        if self.random is not None:
            return self._adopt(self.random.randn(*shape, dtype=dtype))
        return self._from_host(np.random.randn(*shape).astype(dtype))

    def _adopt(self, device_array):
        from .ndarray import NDArray
        return NDArray._wrap(self, device_array)

    def one_hot(self, n, i, dtype="float32"):
        return self._from_host(np.eye(n, dtype=dtype)[np.asarray(i, dtype=np.int64)])

    def empty(self, shape, dtype="float32"):
        from .ndarray import NDArray
        return NDArray.make(shape, device=self, dtype=str(np.dtype(dtype)))

    def full(self, shape, fill_value, dtype="float32"):
        out = self.empty(shape, dtype)
        out.fill(fill_value)
        return out


_CPU_NUMPY = BackendDevice("cpu_numpy", make_numpy_backend("cpu_numpy"))
# The course's device constants, read as `device.__tile_size__` (COURSE_API.md sec. 10.3).
_FORWARDED_DUNDERS = frozenset({"__tile_size__", "__device_name__"})
# The names a backend table offers (the flat-memory interface and its fast paths).
_TABLE_NAMES = frozenset(name for name in dir(_CPU_NUMPY.mod) if not name.startswith("__"))


def cpu_numpy():
    return _CPU_NUMPY


def _check_gemm_isa_variable(native):
    """Warn, naming the value, when NEEDLE_GEMM_ISA asks for a GEMM variant the native module
    cannot run (the module then keeps its default, the widest this CPU has)."""
    value = os.environ.get("NEEDLE_GEMM_ISA", "")
    if value and hasattr(native, "gemm_isa"):
        try:
            native.set_gemm_isa(value)
        except ValueError as error:
            warnings.warn(f"NEEDLE_GEMM_ISA={value!r} ignored ({error}); the GEMM uses "
                          f"{native.gemm_isa()}", RuntimeWarning, stacklevel=3)


@functools.cache
def cpu():
    """The native C++ device when built, else the flat-memory table over NumPy."""
    try:
        native = importlib.import_module("needle.backend_ndarray.ndarray_backend_cpu")
        _check_gemm_isa_variable(native)
        from .fused_native import make_fused_native  # it needs NDArray, which needs us
        native.fused = make_fused_native(native)
        return BackendDevice("cpu", native, fast=False)
    except ImportError:
        log.debug("needle: native cpu backend not built; cpu() uses the NumPy implementation")
        return BackendDevice("cpu", make_numpy_backend("cpu"), fast=False)


@functools.cache
def cuda():
    """CuPy on the GPU; constructible everywhere, `enabled()` is False without a GPU.

    Random draws come from NumPy's global RNG on the host and are copied over, so seeds give
    the course's values on every device; `cuda().use_device_rng()` draws on the GPU instead.
    """
    cupy = load_cupy()
    return BackendDevice("cuda", None if cupy is None else make_cuda_backend(cupy))


def default_device():
    return _CPU_NUMPY


def all_devices():
    return [cpu(), cuda(), cpu_numpy()]
