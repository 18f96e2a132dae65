"""cpu_numpy()'s fused kernels: the native module's, where it is built.

`array_api.fused(name, ...)` asks the device for one kernel in place of a chain of NumPy
passes; on cpu_numpy() these come from the native module (src/ndarray_backend_cpu.cc,
section "fused"), each one pass over memory on the module's thread pool:

    im2col           the convolutions' patch gather (the composite: pad, then copy a strided
                     view), the padding read as zeros
    col2im           conv_transpose's scatter-add of its columns (the composite: one add per
                     kernel offset), as a gather in the composite's offset order, written
                     for the output window alone (the composite crops its canvas)
    leaky_relu       x > 0 ? x : slope * x          (the composite: maximum(x, slope * x))
    leaky_relu_grad  x > 0 ? g : slope * g          (the composite: g * (mask * (1 - s) + s))
    adam             needle.optim.Adam's update of w, m and v in one pass
    batch_norm       ops.BatchNormalize's forward: the per-channel mean and biased variance
                     in one pass, the normalised, scaled and shifted output in a second
                     (the composite: about seven NumPy passes)
    batch_norm_grad  its backward: the per-channel sums of g and g * x_hat (the bias's and
                     weight's gradients) in one pass, the input's gradient in a second

They compute in float32 in the composites' order, so they give the composites' results (the
leaky ReLU gradient and Adam's square root within one float32 rounding), except the two
batch_norm kernels: they sum in double, not NumPy's pairwise float32, so they agree with the
composite (and PyTorch) to float32 rounding. A kernel answers
None for what it does not handle (other dtypes), and the caller runs its composite. Without
the native module, or with NEEDLE_FUSED=0 (read when needle is imported), the table is
empty and every op runs its NumPy composite.
"""
import importlib
import os

import numpy as np

__all__ = ["make_fused_cpu"]


def _floats(*arrays):
    return all(a.dtype == np.float32 for a in arrays)


def _memory_order(x):
    """(the axes of x in memory order, x transposed to that order): C-contiguous where x is
    dense in some axis order (not a strided slice)."""
    order = tuple(int(i) for i in np.argsort([-s for s in x.strides], kind="stable"))
    return order, x.transpose(order)


def _elementwise(kernel, x, *others, **scalars):
    """kernel over x and arrays of its shape, in x's memory order (a permuted NCHW view
    stays one), the result in that order too, as NumPy's elementwise passes keep it; None
    when x is not dense in some axis order (a strided slice): the composite handles it."""
    order, dense = _memory_order(x)
    if not dense.flags.c_contiguous or any(o.shape != x.shape for o in others):
        return None
    operands = [np.ascontiguousarray(o.transpose(order)) for o in others]
    result, back = kernel(dense, *operands, **scalars), np.argsort(order)
    if isinstance(result, tuple):
        return tuple(r.transpose(back) for r in result)
    return result.transpose(back)


def _per_channel(kernel, axis, x, *others, vectors):
    """kernel over x seen as (outer, C, inner) in its memory order, C the size of `axis`
    where that order has it (an NCHW view of an NHWC buffer: (N * H * W, C, 1)), arrays of
    x's shape moved to that order, and (C,) `vectors`; its first result comes back in x's
    layout, the rest are (C,). A view not dense in any order (conv_transpose's output, a
    crop of its canvas) is copied first: one pass, and the kernel's two still save the
    composite's five or more. None when x is empty."""
    if x.size == 0 or any(o.shape != x.shape for o in others):
        return None
    order, dense = _memory_order(x)
    dense = np.ascontiguousarray(dense)  # itself where x is dense already
    at = order.index(axis)
    outer, inner = int(np.prod(dense.shape[:at])), int(np.prod(dense.shape[at + 1:]))
    seen = (outer, x.shape[axis], inner)
    operands = [np.ascontiguousarray(o.transpose(order)).reshape(seen) for o in others]
    first, *rest = kernel(dense.reshape(seen), *operands, *(np.ravel(v) for v in vectors))
    return (first.reshape(dense.shape).transpose(np.argsort(order)), *rest)


def make_fused_cpu():
    """name -> function(*NumPy arrays, **scalars), or {} without the native kernels."""
    if os.environ.get("NEEDLE_FUSED", "1") == "0":
        return {}
    try:
        native = importlib.import_module("needle.backend_ndarray.ndarray_backend_cpu")
    except ImportError:
        return {}
    if not hasattr(native, "fused_adam"):  # a module built before the kernels existed
        return {}

    def im2col(x, kernel, stride, padding, dilation, out_size):
        return native.fused_im2col(x, kernel, stride, padding, dilation, out_size) \
            if _floats(x) else None

    def col2im(cols, canvas_shape, origin, out_size, stride, dilation):
        n, c = cols.shape[0], cols.shape[5]
        return native.fused_col2im(cols, (n, *out_size, c), origin, stride, dilation) \
            if _floats(cols) else None

    def leaky_relu(x, slope):
        return _elementwise(native.fused_leaky_relu, x, slope=slope) if _floats(x) else None

    def leaky_relu_grad(x, g, slope):
        return _elementwise(native.fused_leaky_relu_grad, x, g, slope=slope) \
            if _floats(x, g) else None

    def adam(w, g, m, v, **scalars):
        return _elementwise(native.fused_adam, w, g, m, v, **scalars) \
            if _floats(w, g, m, v) else None

    def batch_norm(x, weight, bias, axis, eps):
        if not _floats(x, weight, bias):
            return None
        return _per_channel(lambda *a: native.fused_batch_norm(*a, eps), axis, x,
                            vectors=(weight, bias))

    def batch_norm_grad(x, g, weight, mean, inv_std, axis):
        if not _floats(x, g, weight, mean, inv_std):
            return None
        return _per_channel(native.fused_batch_norm_grad, axis, x, g,
                            vectors=(weight, mean, inv_std))

    kernels = {"im2col": im2col, "col2im": col2im, "leaky_relu": leaky_relu,
               "leaky_relu_grad": leaky_relu_grad, "adam": adam}
    if hasattr(native, "fused_batch_norm"):  # not in a module built before them
        kernels.update(batch_norm=batch_norm, batch_norm_grad=batch_norm_grad)
    return kernels
