"""The course's flat-memory backend interface, written once over an array module `xp`.

A backend module is a table of functions over flat buffers (`Array`): every function takes
its inputs and an `out` buffer, the way the course's C++/CUDA modules do. `make_backend(numpy)`
is the `cpu()` device when the native module is not built; `make_backend(cupy)` serves CUDA.
Strides and offsets are in elements, as in the course.
"""
from types import SimpleNamespace

_DTYPE_NAMES = {}


def _dtype_name(dtype):
    """str(dtype), cached: NumPy 2 builds the name in Python, ~5 us per call."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def make_backend(xp, name, tile_size, pointer, to_host, view=None):
    """Return the flat-memory table for array module `xp`.

    `pointer(flat_array)` gives the buffer's address (NumPy and CuPy spell it differently),
    `to_host(array)` copies an `xp` array into a NumPy array, and `view(flat, shape,
    byte_strides, offset)` builds a strided view (default `xp.lib.stride_tricks.as_strided`).
    """
    if view is None:
        def view(flat, shape, byte_strides, offset):
            return xp.lib.stride_tricks.as_strided(flat[offset:], shape, byte_strides)

    class Array:
        """A flat buffer of `size` elements."""

        __slots__ = ("array",)

        def __init__(self, size, dtype="float32"):
            self.array = xp.empty(int(size), dtype=dtype)

        @classmethod
        def wrap(cls, flat):
            buffer = cls.__new__(cls)
            buffer.array = flat
            return buffer

        @property
        def size(self):
            return self.array.size

        @property
        def dtype(self):
            return _dtype_name(self.array.dtype)

        def ptr(self):
            return pointer(self.array)

    def strided(a, shape, strides, offset):
        itemsize = a.array.itemsize
        return view(a.array, tuple(shape), tuple(s * itemsize for s in strides), offset)

    def to_numpy(a, shape, strides, offset):
        return to_host(strided(a, shape, strides, offset)).copy()

    def from_numpy(np_array, out):
        out.array[:] = xp.asarray(np_array).reshape(-1)

    def fill(out, val):
        out.array.fill(val)

    def compact(a, out, shape, strides, offset):
        out.array.reshape(shape)[...] = strided(a, shape, strides, offset)

    def ewise_setitem(a, out, shape, strides, offset):
        strided(out, shape, strides, offset)[...] = a.array[: out_size(shape)].reshape(shape)

    def scalar_setitem(size, val, out, shape, strides, offset):
        strided(out, shape, strides, offset)[...] = val

    def out_size(shape):
        size = 1
        for dim in shape:
            size *= dim
        return size

    def binary(fn):
        def ewise(a, b, out):
            fn(a.array, b.array, out=out.array)

        def scalar(a, val, out):
            fn(a.array, val, out=out.array)

        return ewise, scalar

    def comparison(fn):
        def ewise(a, b, out):
            out.array[:] = fn(a.array, b.array)

        def scalar(a, val, out):
            out.array[:] = fn(a.array, val)

        return ewise, scalar

    def unary(fn):
        def apply(a, out):
            fn(a.array, out=out.array)

        return apply

    def matmul(a, b, out, m, n, p):
        xp.matmul(a.array[: m * n].reshape(m, n), b.array[: n * p].reshape(n, p),
                  out=out.array[: m * p].reshape(m, p))

    def matmul_tiled(a, b, out, m, n, p):
        """Tiled layout: a is (m/T, n/T, T, T) blocks, b (n/T, p/T, T, T), out (m/T, p/T, T, T).

        Overwrites `out`: hw3 passes a fresh, uninitialised `NDArray.make` buffer (the
        course's C++ zeroes out and then accumulates the tile products). The blocks are
        viewed as plain matrices so the product is one BLAS call.
        """
        t = tile_size
        a2 = a.array[: m * n].reshape(m // t, n // t, t, t).transpose(0, 2, 1, 3).reshape(m, n)
        b2 = b.array[: n * p].reshape(n // t, p // t, t, t).transpose(0, 2, 1, 3).reshape(n, p)
        out4 = out.array[: m * p].reshape(m // t, p // t, t, t)
        out4[...] = xp.matmul(a2, b2).reshape(m // t, t, p // t, t).transpose(0, 2, 1, 3)

    def reduction(fn):
        def reduce(a, out, reduce_size):
            fn(a.array[: out.size * reduce_size].reshape(out.size, reduce_size), axis=1,
               out=out.array)

        return reduce

    ewise_add, scalar_add = binary(xp.add)
    ewise_mul, scalar_mul = binary(xp.multiply)
    ewise_div, scalar_div = binary(xp.divide)
    ewise_power, scalar_power = binary(xp.power)
    ewise_maximum, scalar_maximum = binary(xp.maximum)
    ewise_eq, scalar_eq = comparison(xp.equal)
    ewise_ge, scalar_ge = comparison(xp.greater_equal)
    return SimpleNamespace(
        __device_name__=name, __tile_size__=tile_size, Array=Array,
        to_numpy=to_numpy, from_numpy=from_numpy, fill=fill, compact=compact,
        ewise_setitem=ewise_setitem, scalar_setitem=scalar_setitem,
        ewise_add=ewise_add, scalar_add=scalar_add, ewise_mul=ewise_mul, scalar_mul=scalar_mul,
        ewise_div=ewise_div, scalar_div=scalar_div, ewise_power=ewise_power,
        scalar_power=scalar_power,
        ewise_maximum=ewise_maximum, scalar_maximum=scalar_maximum,
        ewise_eq=ewise_eq, scalar_eq=scalar_eq, ewise_ge=ewise_ge, scalar_ge=scalar_ge,
        ewise_log=unary(xp.log), ewise_exp=unary(xp.exp), ewise_tanh=unary(xp.tanh),
        matmul=matmul, matmul_tiled=matmul_tiled,
        reduce_max=reduction(xp.max), reduce_sum=reduction(xp.sum),
        xp=xp, strided=strided,
    )
