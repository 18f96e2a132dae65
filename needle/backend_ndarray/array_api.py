"""Module-level array functions with NumPy's names and semantics, over NDArray.

`needle.ops` computes with `array_api.<fn>(...)`, which is this module in the NDArray flavour
and `needle.backend_numpy` in the NumPy flavour, so every op is written once.
"""
import numpy as np

from .ndarray import NDArray

__all__ = ["array", "empty", "full", "broadcast_to", "reshape", "swapaxes", "as_strided",
           "negative", "maximum", "log", "exp", "tanh", "matmul", "where", "sum", "max",
           "flip", "pad", "stack", "split", "concatenate", "sections", "transpose", "element_strides", "add_to_slice",
           "fused"]


def array(a, dtype="float32", device=None):
    return NDArray(a, device=device, dtype=dtype)


def empty(shape, dtype="float32", device=None):
    return NDArray.make(shape, device=device, dtype=str(np.dtype(dtype)))


def full(shape, fill_value, dtype="float32", device=None):
    out = empty(shape, dtype, device)
    out.fill(fill_value)
    return out


def broadcast_to(a, shape):
    return a.broadcast_to(shape)


def reshape(a, new_shape):
    return a.compact().reshape(new_shape)


def swapaxes(a, axis1, axis2):
    axes = list(range(a.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return a.permute(axes)


def as_strided(a, shape, strides):
    """A view with element strides (NumPy's as_strided takes bytes)."""
    return a.as_strided(shape, strides)


def negative(a):
    return -a


def maximum(a, b):
    return a.maximum(b)


def log(a):
    return a.log()


def exp(a):
    return a.exp()


def tanh(a):
    return a.tanh()


def matmul(a, b):
    return a @ b


def where(condition, a, b):
    """condition ? a : b for a 0/1 float `condition`; a and b arrays of its shape or scalars."""
    return condition * a + (1 - condition) * b


def sum(a, axis=None, keepdims=False):
    """NumPy semantics: axis=None without keepdims gives a 0-d array."""
    out = a.sum(axis=axis, keepdims=keepdims)
    return out.reshape(()) if axis is None and not keepdims else out


def max(a, axis=None, keepdims=False):
    out = a.max(axis=axis, keepdims=keepdims)
    return out.reshape(()) if axis is None and not keepdims else out


def flip(a, axes):
    return a.flip(axes)


def pad(a, axes):
    return a.pad(axes)


def stack(arrays, axis=0):
    first = arrays[0]
    axis %= first.ndim + 1
    shape = first.shape[:axis] + (len(arrays),) + first.shape[axis:]
    out = NDArray.make(shape, device=first.device, dtype=first.dtype)
    prefix = (slice(None),) * axis
    for i, a in enumerate(arrays):
        if a.shape != first.shape:
            raise ValueError(f"stack: shape mismatch {first.shape} vs {a.shape}")
        out[prefix + (i,)] = a
    return out


def split(a, axis=0):
    """The pieces of `a` along `axis`, that axis dropped (inverse of stack)."""
    axis %= a.ndim
    prefix = (slice(None),) * axis
    shape = a.shape[:axis] + a.shape[axis + 1:]
    return [a[prefix + (i,)].compact().reshape(shape) for i in range(a.shape[axis])]


def concatenate(arrays, axis=0):
    """The arrays joined along an existing `axis` (equal sizes on every other axis)."""
    first = arrays[0]
    axis %= first.ndim
    rest = first.shape[:axis], first.shape[axis + 1:]
    for a in arrays:
        if (a.shape[:axis], a.shape[axis + 1:]) != rest:
            raise ValueError(f"concatenate: shapes {first.shape} and {a.shape} differ off "
                             f"axis {axis}")
    total = int(np.sum([a.shape[axis] for a in arrays]))
    out = NDArray.make(rest[0] + (total,) + rest[1], device=first.device, dtype=first.dtype)
    prefix, start = (slice(None),) * axis, 0
    for a in arrays:
        out[prefix + (slice(start, start + a.shape[axis]),)] = a
        start += a.shape[axis]
    return out


def sections(a, sizes, axis=0):
    """`a` cut along `axis` into consecutive pieces of the given sizes (inverse of
    concatenate)."""
    axis %= a.ndim
    prefix, start, pieces = (slice(None),) * axis, 0, []
    for size in sizes:
        pieces.append(a[prefix + (slice(start, start + size),)].compact())
        start += size
    return pieces


def transpose(a, axes=None):
    """NumPy's transpose: a full permutation (reversed axes by default)."""
    return a.permute(tuple(reversed(range(a.ndim))) if axes is None else axes)


def element_strides(a):
    return a.strides


def add_to_slice(out, slices, value):
    """out[slices] += value, in place; `value` has the slice's size (reshaped to fit)."""
    target = out[slices]
    if out.device.xp is not None:
        view = target._view()
        view += value._view().reshape(view.shape)
    else:
        out[slices] = target + value.compact().reshape(target.shape)


def fused(name, *arrays, **scalars):
    """The device's fused kernel `name` applied to `arrays` (NDArrays of one device), or None
    when the device has none or the kernel declines these arrays (cuda(): see
    ndarray_backend_cuda.FUSED; cpu_numpy(): fused_cpu; cpu(): fused_native). Returns an
    NDArray, or a tuple of them for kernels with several outputs."""
    device = arrays[0].device
    kernel = getattr(device.mod, "fused", {}).get(name)
    if kernel is None:
        return None
    if device.xp is None:  # the native cpu(): kernels over NDArrays (fused_native)
        return kernel(*arrays, **scalars)
    result = kernel(*(a._view() for a in arrays), **scalars)
    if result is None:
        return None
    if isinstance(result, tuple):
        return tuple(NDArray._wrap(device, r) for r in result)
    return NDArray._wrap(device, result)
