"""NDArray: the course's strided n-d array over a device's flat buffer.

An NDArray is (handle, shape, strides, offset, device), strides and offset in elements, so
permute, broadcast_to, reshape, slicing and flip are views that share `_handle`. Each
operation either calls the device's flat-memory table (the course interface, which the native
C++ module provides) or, on devices that offer it (NumPy, CuPy), calls the array module `xp`
directly on a strided view: one pass, no `compact()` copy of broadcast or permuted operands.
"""
import math

import numpy as np

from .devices import default_device

__all__ = ["NDArray"]


def prod(shape):
    return math.prod(shape)


def axes_by_stride(strides):
    """The axes from the largest stride to the smallest, ties in axis order: the memory order
    of an array that is dense in some axis order (an NCHW view of NHWC data: (0, 2, 3, 1))."""
    return tuple(sorted(range(len(strides)), key=lambda axis: -strides[axis]))


def inverse_permutation(order):
    return tuple(sorted(range(len(order)), key=order.__getitem__))


def _as_scalar(value):
    """Course ops pass NumPy scalars or 1-element arrays as scalars; keep the array's dtype."""
    return value.item() if hasattr(value, "item") else value


class NDArray:
    """A strided view of a flat device buffer (COURSE_API.md section 10)."""

    __slots__ = ("_shape", "_strides", "_offset", "_device", "_handle", "_xp_view")

    def __init__(self, other, device=None, dtype=None):
        if isinstance(other, NDArray):
            device = other.device if device is None else device
            if device == other.device and dtype in (None, other.dtype):
                self._init(other + 0)
                return
            dtype = other.dtype if dtype is None else dtype
            other = other.numpy()
        # float32 unless a dtype is given, whatever the input (the course's NDArray is
        # float32-only; COURSE_API.md sec. 3.6)
        host = np.asarray(other, dtype=np.float32 if dtype is None else dtype)
        device = default_device() if device is None else device
        out = NDArray.make(host.shape, device=device, dtype=str(host.dtype))
        device.from_numpy(np.ascontiguousarray(host), out._handle)
        self._init(out)

    def _init(self, other):
        for name in NDArray.__slots__:
            setattr(self, name, getattr(other, name))

    @staticmethod
    def compact_strides(shape):
        stride, strides = 1, []
        for dim in reversed(shape):
            strides.append(stride)
            stride *= dim
        return tuple(reversed(strides))

    @staticmethod
    def make(shape, strides=None, device=None, handle=None, offset=0, dtype="float32"):
        """A new array header; allocates a buffer when `handle` is None."""
        array = object.__new__(NDArray)
        array._shape = tuple(int(d) for d in shape)
        array._strides = NDArray.compact_strides(array._shape) if strides is None \
            else tuple(strides)
        array._offset = offset
        array._device = default_device() if device is None else device
        array._handle = array._device.Array(prod(array._shape), dtype=dtype) \
            if handle is None else handle
        array._xp_view = None
        return array

    @staticmethod
    def _wrap(device, result):
        """Adopt a freshly computed `xp` array (fast devices) without copying it.

        NumPy's ufuncs keep the memory order of permuted inputs (an NCHW view of NHWC data),
        so a dense result in permuted order is adopted as a permuted view of its storage.
        """
        if not result.flags.c_contiguous:
            order = axes_by_stride(result.strides)
            storage = result.transpose(order)
            if storage.flags.c_contiguous:
                out = NDArray._wrap(device, storage).permute(inverse_permutation(order))
                out._xp_view = result
                return out
        # ascontiguousarray returns at least 1-D; reshape keeps 0-d results 0-d.
        result = device.xp.ascontiguousarray(result).reshape(result.shape)
        out = NDArray.make(result.shape, device=device,
                           handle=device.Array.wrap(result.reshape(-1)))
        out._xp_view = result
        return out

    def _view(self):
        """This array as an `xp` array sharing memory (fast devices only)."""
        if self._xp_view is None:
            self._xp_view = self._device.strided(self._handle, self._shape, self._strides,
                                                 self._offset)
        return self._xp_view

    # ---- properties -------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def strides(self):
        return self._strides

    @property
    def device(self):
        return self._device

    @property
    def dtype(self):
        return self._handle.dtype

    @property
    def ndim(self):
        return len(self._shape)

    @property
    def size(self):
        return prod(self._shape)

    @property
    def flat(self):
        """A 1-D view sharing memory (the course's gradient checks write through it)."""
        return self.compact().reshape((self.size,))

    def __repr__(self):
        return f"NDArray({self.numpy()}, device={self.device})"

    def __str__(self):
        return str(self.numpy())

    def __len__(self):
        return self._shape[0]

    def numpy(self):
        return self._device.to_numpy(self._handle, self._shape, self._strides, self._offset)

    def to(self, device):
        return self if device == self.device else NDArray(self.numpy(), device=device)

    def astype(self, dtype):
        if str(np.dtype(dtype)) == self.dtype:
            return self
        if self._device.xp is not None:
            return NDArray._wrap(self._device, self._view().astype(dtype))
        return NDArray(self.numpy(), device=self._device, dtype=dtype)

    def fill(self, value):
        self._device.fill(self._handle, value)

    # ---- views ------------------------------------------------------------------------
    def is_compact(self):
        return (self._strides == NDArray.compact_strides(self._shape)
                and prod(self._shape) == self._handle.size)

    def compact(self):
        if self.is_compact():
            return self
        out = NDArray.make(self._shape, device=self._device, dtype=self.dtype)
        self._device.compact(self._handle, out._handle, self._shape, self._strides,
                             self._offset)
        return out

    def _covers_buffer(self):
        """Whether this view is its whole buffer in some axis order (compact, or a permuted
        compact array such as the convolutions' NCHW views of NHWC buffers): flat elementwise
        kernels then run on the buffer as it is, with no compacting copy, as NumPy's ufuncs
        keep a permuted input's memory order."""
        if self._offset or prod(self._shape) != self._handle.size:
            return False
        expected = 1
        for stride, dim in sorted(zip(self._strides, self._shape)):
            if dim > 1:
                if stride != expected:
                    return False
                expected *= dim
        return True

    def _like(self):
        """A new array of this shape and dtype laid out as this view (which covers its
        buffer): compact for a compact view, permuted the same way for a permuted one."""
        return NDArray.make(self._shape, strides=self._strides, device=self._device,
                            dtype=self.dtype)

    def as_strided(self, shape, strides):
        return NDArray.make(shape, strides=strides, device=self._device, handle=self._handle,
                            offset=self._offset)

    def reshape(self, new_shape):
        new_shape = _resolve_shape(new_shape, self.size, self._shape)
        if not self.is_compact():
            raise ValueError(f"reshape: array of shape {self._shape} with strides "
                             f"{self._strides} is not compact; call compact() first")
        return self.as_strided(new_shape, NDArray.compact_strides(new_shape))

    def permute(self, new_axes):
        new_axes = tuple(new_axes)
        if sorted(new_axes) != list(range(self.ndim)):
            raise ValueError(f"permute: axes {new_axes} are not a permutation of "
                             f"{self.ndim} axes")
        return self.as_strided(tuple(self._shape[a] for a in new_axes),
                               tuple(self._strides[a] for a in new_axes))

    def broadcast_to(self, new_shape):
        new_shape = tuple(new_shape)
        lead = len(new_shape) - self.ndim
        if lead < 0:
            raise ValueError(f"broadcast_to: cannot broadcast shape {self._shape} "
                             f"to {new_shape}")
        strides = [0] * lead
        for old, new, stride in zip(self._shape, new_shape[lead:], self._strides):
            if old == new:
                strides.append(stride)
            elif old == 1:
                strides.append(0)
            else:
                raise ValueError(f"broadcast_to: cannot broadcast shape {self._shape} "
                                 f"to {new_shape}")
        return self.as_strided(new_shape, tuple(strides))

    def process_slice(self, sl, dim):
        """A slice with non-negative start, stop and step clamped to axis `dim`."""
        start, stop, step = sl.indices(self._shape[dim])
        if step <= 0:
            raise ValueError(f"NDArray indexing: negative or zero step {sl.step} "
                             "is not supported")
        return slice(start, max(stop, start), step)

    def _index_to_slice(self, index, dim):
        if isinstance(index, slice):
            return self.process_slice(index, dim)
        index = int(index)
        size = self._shape[dim]
        if not -size <= index < size:
            raise IndexError(f"NDArray index {index} out of range for axis {dim} "
                             f"of size {size}")
        index %= size
        return slice(index, index + 1, 1)

    def __getitem__(self, idxs):
        """Course indexing: an integer i selects i:i+1, so no axis is ever dropped."""
        if not isinstance(idxs, tuple):
            idxs = (idxs,)
        if len(idxs) > self.ndim:
            raise IndexError(f"NDArray: {len(idxs)} indices for an array of "
                             f"{self.ndim} dims")
        idxs = idxs + (slice(None),) * (self.ndim - len(idxs))
        slices = [self._index_to_slice(s, dim) for dim, s in enumerate(idxs)]
        shape = tuple(len(range(s.start, s.stop, s.step)) for s in slices)
        strides = tuple(stride * s.step for stride, s in zip(self._strides, slices))
        offset = self._offset + sum(s.start * st for s, st in zip(slices, self._strides))
        return NDArray.make(shape, strides=strides, device=self._device, handle=self._handle,
                            offset=offset)

    def __setitem__(self, idxs, other):
        view = self[idxs]
        if isinstance(other, np.ndarray):
            other = NDArray(other.astype(self.dtype), device=self._device)
        if isinstance(other, NDArray):
            if other.size != view.size:
                raise ValueError(f"NDArray setitem: value of shape {other.shape} does not "
                                 f"fit the selected shape {view.shape}")
            self._device.ewise_setitem(other.compact()._handle, self._handle, view.shape,
                                       view.strides, view._offset)
        else:
            self._device.scalar_setitem(view.size, _as_scalar(other), self._handle,
                                        view.shape, view.strides, view._offset)

    # ---- elementwise ------------------------------------------------------------------
    def _check_operand(self, other, op):
        if other._device != self._device:
            raise ValueError(f"{op}: operands on different devices: {self._device} "
                             f"and {other._device}")
        if other._shape != self._shape:
            raise ValueError(f"{op}: shape mismatch {self._shape} vs {other._shape}")

    def _promoted(self, other, op):
        """(self, other) in one dtype, by PyTorch's rule: a float meeting an integer or bool
        array keeps the float's dtype (never a silent float64); two different floats are an
        error naming both; integers of different widths promote as NumPy does."""
        if other.dtype == self.dtype:
            return self, other
        a_float, b_float = np.dtype(self.dtype).kind == "f", np.dtype(other.dtype).kind == "f"
        if a_float and b_float:
            raise TypeError(f"{op}: operands have different dtypes: {self.dtype} and "
                            f"{other.dtype}; convert one with .astype()")
        if a_float or b_float:
            dtype = self.dtype if a_float else other.dtype
        else:
            dtype = str(np.result_type(self.dtype, other.dtype))
        return self.astype(dtype), other.astype(dtype)

    def _binary(self, other, op, xp_name, ewise, scalar):
        xp = self._device.xp
        if isinstance(other, NDArray):
            self._check_operand(other, op)
            self, other = self._promoted(other, op)
            if xp is not None:
                return NDArray._wrap(self._device, getattr(xp, xp_name)(self._view(),
                                                                        other._view()))
            if self._strides == other._strides and self._covers_buffer() and \
                    other._covers_buffer():
                a, b = self, other
            else:
                a, b = self.compact(), other.compact()
            out = a._like()
            getattr(self._device, ewise)(a._handle, b._handle, out._handle)
            return out
        other = _as_scalar(other)
        if xp is not None:
            return NDArray._wrap(self._device, getattr(xp, xp_name)(self._view(), other))
        a = self if self._covers_buffer() else self.compact()
        out = a._like()
        getattr(self._device, scalar)(a._handle, other, out._handle)
        return out

    def _compare(self, other, op, xp_name, ewise, scalar):
        xp = self._device.xp
        if xp is None:
            return self._binary(other, op, xp_name, ewise, scalar)
        if isinstance(other, NDArray):
            self._check_operand(other, op)
            self, other = self._promoted(other, op)
            other = other._view()
        else:
            other = _as_scalar(other)
        result = getattr(xp, xp_name)(self._view(), other)
        return NDArray._wrap(self._device, result.astype(self.dtype))

    def _unary(self, xp_name, flat_name):
        if self._device.xp is not None:
            return NDArray._wrap(self._device, getattr(self._device.xp, xp_name)(self._view()))
        a = self if self._covers_buffer() else self.compact()
        out = a._like()
        getattr(self._device, flat_name)(a._handle, out._handle)
        return out

    def __add__(self, other):
        return self._binary(other, "add", "add", "ewise_add", "scalar_add")

    def __mul__(self, other):
        return self._binary(other, "multiply", "multiply", "ewise_mul", "scalar_mul")

    def __truediv__(self, other):
        return self._binary(other, "divide", "divide", "ewise_div", "scalar_div")

    def maximum(self, other):
        return self._binary(other, "maximum", "maximum", "ewise_maximum", "scalar_maximum")

    def __pow__(self, exponent):
        return self._binary(exponent, "power", "power", "ewise_power", "scalar_power")

    __radd__ = __add__
    __rmul__ = __mul__

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        if self._device.xp is not None:
            return self._binary(other, "subtract", "subtract", None, None)
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rtruediv__(self, other):
        return (self ** -1) * other

    def __eq__(self, other):
        return self._compare(other, "equal", "equal", "ewise_eq", "scalar_eq")

    def __ge__(self, other):
        return self._compare(other, "greater_equal", "greater_equal", "ewise_ge", "scalar_ge")

    def __ne__(self, other):
        if self._device.xp is not None:
            return self._compare(other, "not_equal", "not_equal", None, None)
        return 1 - (self == other)

    def __gt__(self, other):
        if self._device.xp is not None:
            return self._compare(other, "greater", "greater", None, None)
        return (self >= other) * (self != other)

    def __lt__(self, other):
        if self._device.xp is not None:
            return self._compare(other, "less", "less", None, None)
        return 1 - (self >= other)

    def __le__(self, other):
        if self._device.xp is not None:
            return self._compare(other, "less_equal", "less_equal", None, None)
        return 1 - (self > other)

    __hash__ = None

    def log(self):
        return self._unary("log", "ewise_log")

    def exp(self):
        return self._unary("exp", "ewise_exp")

    def tanh(self):
        return self._unary("tanh", "ewise_tanh")

    # ---- matmul -----------------------------------------------------------------------
    def __matmul__(self, other):
        if self.ndim < 2 or other.ndim < 2 or self._shape[-1] != other._shape[-2]:
            raise ValueError(f"matmul: shapes {self._shape} and {other._shape} are not "
                             "aligned (need (..., m, n) @ (..., n, p))")
        if other._device != self._device:
            raise ValueError(f"matmul: operands on different devices: {self._device} "
                             f"and {other._device}")
        if self._device.xp is not None:
            if self._shape[-1] == 1:
                return self._outer(other)
            return NDArray._wrap(self._device, self._device.xp.matmul(self._view(),
                                                                      other._view()))
        if self.ndim == 2 and other.ndim == 2:
            return self._matmul_2d(other)
        return self._matmul_batched(other)

    def _outer(self, other):
        """(..., m, 1) @ (..., 1, p) on an xp device as one broadcast multiply: each entry is
        one product, as in the GEMM, which NumPy's BLAS runs far slower at this shape (the
        7x7 -> 1x1 last conv's input gradient, (64, 1) @ (1, 6272): 0.65 ms against 0.05;
        cpu()'s own GEMM takes 0.06, its multiply of compacted broadcasts 1.1). Overflow
        stays silent, as in matmul."""
        shape = np.broadcast_shapes(self._shape[:-2], other._shape[:-2]) + \
            (self._shape[-2], other._shape[-1])
        with np.errstate(over="ignore", invalid="ignore"):
            return self.broadcast_to(shape) * other.broadcast_to(shape)

    def _matmul_2d(self, other):
        (m, n), p = self._shape, other._shape[1]
        out = NDArray.make((m, p), device=self._device, dtype=self.dtype)
        strided = getattr(self._device, "matmul_strided", None)
        if strided is not None and self.dtype == other.dtype:
            # The native GEMM packs its operands anyway: it reads row-major and transposed
            # views (conv's im2col(x)^T @ g, g @ W^T) in place, bit for bit the product of
            # their compacted copies, and beats the 8x8-tiled kernel and its tile copies.
            strided(self._handle, other._handle, out._handle, m, n, p,
                    self._strides, self._offset, other._strides, other._offset)
            return out
        t = self._device.__tile_size__
        if m % t == 0 and n % t == 0 and p % t == 0 and hasattr(self._device, "matmul_tiled"):
            def tile(a):
                rows, cols = a.shape
                return a.compact().as_strided((rows // t, cols // t, t, t),
                                              (cols * t, t, cols, 1)).compact()
            tiled = NDArray.make((m // t, p // t, t, t), device=self._device, dtype=self.dtype)
            self._device.matmul_tiled(tile(self)._handle, tile(other)._handle, tiled._handle,
                                      m, n, p)
            return tiled.permute((0, 2, 1, 3)).compact().reshape((m, p))
        self._device.matmul(self.compact()._handle, other.compact()._handle, out._handle,
                            m, n, p)
        return out

    def _matmul_batched(self, other):
        """Flat-memory devices offer 2-D matmul only: loop over the broadcast batch."""
        batch = np.broadcast_shapes(self._shape[:-2], other._shape[:-2])
        a = self.broadcast_to(batch + self._shape[-2:])
        b = other.broadcast_to(batch + other._shape[-2:])
        out = NDArray.make(batch + (self._shape[-2], other._shape[-1]), device=self._device,
                           dtype=self.dtype)
        for index in np.ndindex(*batch):
            out[index] = a[index].compact().reshape(a._shape[-2:]) \
                ._matmul_2d(b[index].compact().reshape(b._shape[-2:]))
        return out

    # ---- convolution gathers on flat devices --------------------------------------------
    def im2col(self, kernel, stride, padding, dilation, out_size):
        """(N*OH*OW, KH*KW*C) patches of this (N, H, W, C) view, the padding read as zeros, in
        one native pass over the view (no padded copy, no 6-D strided compact); None where
        the device has no such kernel (the caller runs its composite)."""
        gather = getattr(self._device.mod, "im2col", None)
        if gather is None or self.dtype not in ("float32", "float64"):
            return None
        n, c = self._shape[0], self._shape[3]
        out = NDArray.make((n * out_size[0] * out_size[1], kernel[0] * kernel[1] * c),
                           device=self._device, dtype=self.dtype)
        gather(self._handle, out._handle, self._shape, self._strides, self._offset,
               tuple(kernel), tuple(stride), tuple(padding), tuple(dilation), tuple(out_size))
        return out

    def col2im(self, canvas_shape, origin, out_size, stride, dilation):
        """The (N, OH, OW, C) window at `origin` of the canvas that scatter-adds these
        (N, H, W, KH, KW, C) columns (conv_transpose's output), each pixel summed in
        kernel-offset order (the composite's adds, so its bits); None where the device has
        no such kernel. Only the window is computed: canvas_shape is not needed."""
        scatter = getattr(self._device.mod, "col2im", None)
        if scatter is None or self.dtype not in ("float32", "float64"):
            return None
        cols = self.compact()
        out_shape = (self._shape[0], *out_size, self._shape[5])
        out = NDArray.make(out_shape, device=self._device, dtype=self.dtype)
        scatter(cols._handle, out._handle, self._shape, out_shape, tuple(origin),
                tuple(stride), tuple(dilation))
        return out

    # ---- reductions -------------------------------------------------------------------
    def _reduce(self, axis, keepdims, xp_name, flat_name):
        """Reduce over `axis` (None, int or tuple). axis=None without keepdims gives (1,)."""
        axes = tuple(range(self.ndim)) if axis is None else \
            tuple(sorted(a % self.ndim for a in ((axis,) if isinstance(axis, int) else axis)))
        kept_shape = tuple(1 if i in axes else d for i, d in enumerate(self._shape))
        if self._device.xp is not None:
            result = getattr(self._device.xp, xp_name)(self._view(), axis=axes,
                                                       keepdims=keepdims)
            out = NDArray._wrap(self._device, result)
            return out.reshape((1,)) if axis is None and not keepdims else out
        rest = tuple(i for i in range(self.ndim) if i not in axes)
        view = self.permute(rest + axes).compact()
        out = NDArray.make(kept_shape, device=self._device, dtype=self.dtype)
        getattr(self._device, flat_name)(view._handle, out._handle,
                                         prod(self._shape[i] for i in axes))
        if keepdims:
            return out
        if axis is None:
            return out.reshape((1,))
        return out.reshape(tuple(d for i, d in enumerate(self._shape) if i not in axes))

    def sum(self, axis=None, keepdims=False):
        return self._reduce(axis, keepdims, "sum", "reduce_sum")

    def max(self, axis=None, keepdims=False):
        return self._reduce(axis, keepdims, "max", "reduce_max")

    # ---- copies -----------------------------------------------------------------------
    def flip(self, axes):
        """A compact copy reversed along `axes` (a negative-stride view, compacted)."""
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        axes = tuple(a % self.ndim for a in axes)
        offset = self._offset + sum((self._shape[a] - 1) * self._strides[a] for a in axes)
        strides = tuple(-s if i in axes else s for i, s in enumerate(self._strides))
        return NDArray.make(self._shape, strides=strides, device=self._device,
                            handle=self._handle, offset=offset).compact()

    def pad(self, axes):
        """Zero padding, one (before, after) pair per axis, like np.pad."""
        if len(axes) != self.ndim:
            raise ValueError(f"pad: need {self.ndim} (before, after) pairs, got {axes}")
        shape = tuple(d + lo + hi for d, (lo, hi) in zip(self._shape, axes))
        out = NDArray.make(shape, device=self._device, dtype=self.dtype)
        out.fill(0)
        out[tuple(slice(lo, lo + d) for d, (lo, _) in zip(self._shape, axes))] = self
        return out


def _resolve_shape(shape, size, old_shape):
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    if shape.count(-1) == 1:
        known = prod(d for d in shape if d != -1)
        shape = tuple(size // known if d == -1 and known else d for d in shape)
    if prod(shape) != size or any(d < 0 for d in shape):
        raise ValueError(f"reshape: cannot reshape array of shape {old_shape} ({size} "
                         f"elements) into shape {shape}")
    return shape
