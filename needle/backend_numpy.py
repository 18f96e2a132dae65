"""The NumPy flavour's array API (NEEDLE_BACKEND=np): NumPy with needle's few extra names.

Tensor data are plain `numpy.ndarray`s here, as the course's hw1/hw2 expect. The functions
mirror `backend_ndarray.array_api`, so `needle.ops` runs unchanged on either flavour.
"""
import numpy as np
from numpy import (broadcast_to, exp, flip, log, matmul, maximum, negative,  # noqa: F401
                   swapaxes, tanh, transpose, where)

__all__ = ["Device", "NDArray", "cpu", "default_device", "all_devices", "array", "empty",
           "full", "broadcast_to", "reshape", "swapaxes", "as_strided", "negative", "maximum",
           "log", "exp", "tanh", "matmul", "where", "sum", "max", "flip", "pad", "stack",
           "split", "concatenate", "sections", "transpose", "element_strides", "add_to_slice", "fused"]

NDArray = np.ndarray


class Device:
    """The one device of the NumPy flavour: arrays are host NumPy arrays."""

    name = "cpu"
    xp = np

    def __repr__(self):
        return "cpu()"

    def __eq__(self, other):
        return isinstance(other, Device)

    def __hash__(self):
        return hash(self.name)

    def enabled(self):
        return True

    def rand(self, *shape, dtype="float32"):
        return np.random.rand(*shape).astype(dtype)

    def randn(self, *shape, dtype="float32"):
        return np.random.randn(*shape).astype(dtype)

    def one_hot(self, n, i, dtype="float32"):
        return np.eye(n, dtype=dtype)[np.asarray(i, dtype=np.int64)]

    def empty(self, shape, dtype="float32"):
        return np.empty(shape, dtype=dtype)

    def full(self, shape, fill_value, dtype="float32"):
        return np.full(shape, fill_value, dtype=dtype)


_CPU = Device()


def cpu():
    return _CPU


def default_device():
    return _CPU


def all_devices():
    return [_CPU]


def array(a, dtype="float32", device=None):
    return np.array(a, dtype=dtype)


def empty(shape, dtype="float32", device=None):
    return np.empty(shape, dtype=dtype)


def full(shape, fill_value, dtype="float32", device=None):
    return np.full(shape, fill_value, dtype=dtype)


def reshape(a, new_shape):
    return np.reshape(a, new_shape)


def as_strided(a, shape, strides):
    """A view with strides in elements, like NDArray.as_strided."""
    return np.lib.stride_tricks.as_strided(a, shape, tuple(s * a.itemsize for s in strides))


def sum(a, axis=None, keepdims=False):
    return np.asarray(np.sum(a, axis=axis, keepdims=keepdims))


def max(a, axis=None, keepdims=False):
    return np.asarray(np.max(a, axis=axis, keepdims=keepdims))


def pad(a, axes):
    return np.pad(a, axes)


def stack(arrays, axis=0):
    return np.stack(arrays, axis=axis)


def split(a, axis=0):
    """The pieces of `a` along `axis`, that axis dropped (inverse of stack)."""
    return [np.take(a, i, axis=axis) for i in range(a.shape[axis])]


def concatenate(arrays, axis=0):
    return np.concatenate(arrays, axis=axis)


def sections(a, sizes, axis=0):
    """`a` cut along `axis` into consecutive pieces of the given sizes."""
    return np.split(a, np.cumsum(sizes)[:-1], axis=axis)


def element_strides(a):
    return tuple(s // a.itemsize for s in a.strides)


def add_to_slice(out, slices, value):
    """out[slices] += value, in place; `value` has the slice's size (reshaped to fit)."""
    target = out[slices]
    target += value.reshape(target.shape)


def fused(name, *arrays, **scalars):
    """No fused kernels in the NumPy flavour: ops fall back to their composites."""
    return None
