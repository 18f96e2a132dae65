"""cpu()'s fused kernels: the native module's, over its own buffers.

The same kernels and C++ cores as cpu_numpy()'s (fused_cpu documents what each replaces and
how its results compare with the composite's), served over NDArrays of the native cpu()
device, so cpu() skips the composites' passes, their compacting copies of broadcast vectors
and their Python overhead as cpu_numpy() does:

    im2col, col2im   NDArray.im2col / NDArray.col2im (any view in; compact columns out)
    leaky_relu, leaky_relu_grad, adam, batch_norm, batch_norm_grad

Every operand is read in the first operand's memory order: a view that is its whole buffer
in some axis order (an NCHW view of the convolutions' NHWC buffers) is used as it is, any
other view is copied into that order once, and the results come back in the same layout,
as NumPy's ufuncs keep a permuted input's order. float32 only: a kernel answers None for
other dtypes and the caller runs its composite. With NEEDLE_FUSED=0 (read when cpu() is
first made) the table is empty.
"""
import math
import os

from .ndarray import NDArray, axes_by_stride, inverse_permutation

__all__ = ["make_fused_native"]


def _floats(*arrays):
    return all(a.dtype == "float32" for a in arrays)


def _in_order(a, order):
    """a permuted to `order`, compact: a's own buffer when it is already laid out so."""
    return a.permute(order).compact()


def _back(dense, order):
    """A result computed in `order` seen in the caller's axis order."""
    return dense.permute(inverse_permutation(order))


def _empty_like(dense):
    return NDArray.make(dense.shape, device=dense.device, dtype=dense.dtype)


def make_fused_native(native):
    """name -> function(*NDArrays, **scalars) for the native module `native`, or {} when
    NEEDLE_FUSED=0 or the module predates these kernels."""
    if os.environ.get("NEEDLE_FUSED", "1") == "0" or not hasattr(native, "batch_norm"):
        return {}

    def elementwise(kernel, first, *others, outputs=1, **scalars):
        if not _floats(first, *others) or any(o.shape != first.shape for o in others):
            return None
        order = axes_by_stride(first.strides)
        operands = [_in_order(a, order) for a in (first,) + others]
        results = [_empty_like(operands[0]) for _ in range(outputs)]
        kernel(*(a._handle for a in operands), *(r._handle for r in results), **scalars)
        results = tuple(_back(r, order) for r in results)
        return results if outputs > 1 else results[0]

    def per_channel(x, axis, others, vectors):
        """(x and `others` in x's memory order, outer, C, inner, compact `vectors`), or None
        where the kernel does not apply."""
        if x.size == 0 or not _floats(x, *others, *vectors) or \
                any(o.shape != x.shape for o in others):
            return None
        order = axes_by_stride(x.strides)
        at = order.index(axis)
        dense = [_in_order(a, order) for a in (x,) + tuple(others)]
        outer = math.prod(dense[0].shape[:at])
        inner = math.prod(dense[0].shape[at + 1:])
        return order, dense, (outer, x.shape[axis], inner), [v.compact() for v in vectors]

    def vector(x, channels):
        return NDArray.make((channels,), device=x.device, dtype=x.dtype)

    def batch_norm(x, weight, bias, axis, eps):
        plan = per_channel(x, axis, (), (weight, bias))
        if plan is None:
            return None
        order, (xd,), (outer, c, inner), (weight, bias) = plan
        y, stats = _empty_like(xd), [vector(x, c) for _ in range(3)]
        native.batch_norm(xd._handle, weight._handle, bias._handle, y._handle,
                          *(s._handle for s in stats), outer, c, inner, eps)
        return (_back(y, order), *stats)

    def batch_norm_grad(x, g, weight, mean, inv_std, axis):
        plan = per_channel(x, axis, (g,), (weight, mean, inv_std))
        if plan is None:
            return None
        order, (xd, gd), (outer, c, inner), vectors = plan
        gx, gweight, gbias = _empty_like(xd), vector(x, c), vector(x, c)
        native.batch_norm_grad(xd._handle, gd._handle, *(v._handle for v in vectors),
                               gx._handle, gweight._handle, gbias._handle, outer, c, inner)
        return _back(gx, order), gweight, gbias

    return {
        "im2col": lambda x, **geometry: x.im2col(**geometry),
        "col2im": lambda cols, **geometry: cols.col2im(**geometry),
        "leaky_relu": lambda x, slope: elementwise(native.leaky_relu, x, slope=slope),
        "leaky_relu_grad": lambda x, g, slope: elementwise(native.leaky_relu_grad, x, g,
                                                           slope=slope),
        "adam": lambda w, g, m, v, **scalars: elementwise(native.adam, w, g, m, v, outputs=3,
                                                          **scalars),
        "batch_norm": batch_norm,
        "batch_norm_grad": batch_norm_grad,
    }
