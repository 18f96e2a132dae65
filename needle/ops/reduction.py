"""Reductions: summation, mean, logsumexp, logsoftmax, normalize and batch_normalize."""
import copy

import numpy as np

from ..autograd import Tensor, TensorOp, records_graph
from ..backend_selection import array_api
from .shape import broadcast_to, reshape

__all__ = ["Summation", "LogSumExp", "LogSoftmax", "Normalize", "BatchNormalize", "summation",
           "mean", "logsumexp", "logsoftmax", "normalize", "batch_normalize"]


def _normalize_axes(axes, ndim, name):
    """None -> all axes; int or tuple -> sorted tuple of non-negative axes."""
    if axes is None:
        return tuple(range(ndim))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    for axis in axes:
        if not -ndim <= axis < ndim:
            raise ValueError(f"{name}: axis {axis} is out of range for {ndim} dims")
    return tuple(sorted(axis % ndim for axis in axes))


def _kept_shape(shape, axes):
    """`shape` with the reduced `axes` set to 1 (the keepdims shape)."""
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _expand(x, input_shape, axes):
    """Broadcast a reduced Tensor back to `input_shape` (composite, differentiable)."""
    return broadcast_to(reshape(x, _kept_shape(input_shape, axes)), input_shape)


def _count(shape, axes):
    """How many elements the reduced `axes` of `shape` hold."""
    count = 1
    for axis in axes:
        count *= shape[axis]
    return count


class Summation(TensorOp):
    """Sum over `axes` (None: all), dropping them (no keepdims)."""

    def __init__(self, axes=None):
        self.axes = axes

    def compute(self, a):
        axes = _normalize_axes(self.axes, a.ndim, "summation")
        if not axes:
            return a + 0
        return array_api.sum(a, axis=axes)

    def gradient(self, out_grad, node):
        shape = node.inputs[0].shape
        return _expand(out_grad, shape, _normalize_axes(self.axes, len(shape), "summation"))


def summation(a, axes=None):
    return Summation(axes)(a)


def mean(a, axes=None):
    return summation(a, axes) / _count(a.shape, _normalize_axes(axes, len(a.shape), "mean"))


class LogSumExp(TensorOp):
    """log(sum(exp(a), axes)), shifted by the max so it never overflows.

    A max of -inf (every term -inf) gives -inf and a max of +inf gives +inf, as PyTorch does
    (not the NaN of inf - inf); a NaN anywhere gives NaN. The gradient is the softmax over the
    reduced axes, exp(a - logsumexp(a)), so it is NaN at the -inf and +inf entries of such
    rows, as PyTorch's.
    """

    def __init__(self, axes=None):
        self.axes = axes

    def compute(self, a):
        axes = _normalize_axes(self.axes, a.ndim, "logsumexp")
        top = array_api.max(a, axis=axes, keepdims=True)
        # The shift is the max clamped to finite values: an infinite max then shifts nothing
        # to NaN, the sum is 0 (log taken of 1 instead) or inf, and adding the max gives it.
        big = float(np.finfo(np.result_type(a.dtype, np.float32)).max)
        shift = -array_api.maximum(-array_api.maximum(top, -big), -big)
        total = array_api.sum(array_api.exp(a - array_api.broadcast_to(shift, a.shape)),
                              axis=axes, keepdims=True)
        total = array_api.log(total + (total == 0)) + top
        return array_api.reshape(total, tuple(d for i, d in enumerate(a.shape)
                                              if i not in axes))

    def gradient(self, out_grad, node):
        a = node.inputs[0]
        axes = _normalize_axes(self.axes, len(a.shape), "logsumexp")
        from .elementwise import exp
        return _expand(out_grad, a.shape, axes) * exp(a - _expand(node, a.shape, axes))


def logsumexp(a, axes=None):
    return LogSumExp(axes)(a)


class LogSoftmax(TensorOp):
    """log softmax of a 2-D input over axis 1, max-shifted."""

    def compute(self, a):
        if a.ndim != 2:
            raise ValueError(f"logsoftmax: expected a 2-D input (batch, classes), "
                             f"got shape {a.shape}")
        top = array_api.broadcast_to(array_api.max(a, axis=1, keepdims=True), a.shape)
        shifted = a - top
        total = array_api.log(array_api.sum(array_api.exp(shifted), axis=1, keepdims=True))
        return shifted - array_api.broadcast_to(total, a.shape)

    def gradient(self, out_grad, node):
        from .elementwise import exp
        total = _expand(summation(out_grad, (1,)), node.shape, (1,))
        return out_grad - exp(node) * total


def logsoftmax(a):
    return LogSoftmax()(a)


def _applied_with_statistics(op, inputs):
    """(output, mean, var) of `op` applied to `inputs` through a copy of it: each application
    gets its own op object, whose compute keeps that application's statistics (so reusing
    `op` stays safe), and the output is realised at once to fill them."""
    op = copy.copy(op)
    out = Tensor.make_from_op(op, inputs)
    out.realize_cached_data()
    return out, op.mean, op.var


class Normalize(TensorOp):
    """x_hat = (x - mean) / sqrt(var + eps) over `axes`, with the biased variance: the
    normalisation inside LayerNorm and InstanceNorm as one op (BatchNorm's training forward is
    BatchNormalize, below, which adds the affine).

    Each application gets its own op object, which keeps that application's statistics as
    arrays (reduced axes kept as size 1): `mean` and `var` for running averages (see
    `with_statistics`), `inv_std` for the gradient. With g the output's gradient and means
    over `axes`, the input's gradient is

        dx = (g - mean(g) - x_hat * mean(g * x_hat)) * inv_std.

    When no graph is being recorded (a training step's backward) that is a few array passes
    over the forward's x_hat; otherwise it is built from ops on x, so it can be differentiated
    again (gradient penalties through normalised layers). The two paths are tested to agree.
    """

    def __init__(self, axes=None, eps=1e-5):
        # a Python number: a NumPy float64 eps would promote float32 data
        self.axes, self.eps = axes, eps.item() if hasattr(eps, "item") else eps

    def __call__(self, x):
        return self.with_statistics(x)[0]

    def with_statistics(self, x):
        """(x_hat, mean, var): the output and this application's statistics as arrays (also
        under no_grad, where the output keeps no op)."""
        return _applied_with_statistics(self, [x])

    def _axes(self, ndim):
        axes = _normalize_axes(self.axes, ndim, "normalize")
        if not axes:
            raise ValueError("normalize: needs at least one axis to normalise over")
        return axes

    def compute(self, x):
        axes = self._axes(x.ndim)
        count = _count(x.shape, axes)
        self.mean = array_api.sum(x, axis=axes, keepdims=True) / count
        centered = x - array_api.broadcast_to(self.mean, x.shape)
        self.var = array_api.sum(centered * centered, axis=axes, keepdims=True) / count
        self.inv_std = (self.var + self.eps) ** -0.5
        return centered * array_api.broadcast_to(self.inv_std, x.shape)

    def gradient(self, out_grad, node):
        x = node.inputs[0]
        axes = self._axes(len(x.shape))
        if records_graph(out_grad, x):
            return _normalize_gradient(out_grad, *_normalized(x, axes, self.eps), axes)
        return Tensor.make_const(_normalize_gradient_arrays(
            out_grad.realize_cached_data(), node.realize_cached_data(), self.inv_std, axes))


def normalize(x, axes=None, eps=1e-5):
    return Normalize(axes, eps)(x)


def _normalized(x, axes, eps):
    """(x_hat, inv_std) of x over `axes`, built from ops (so differentiable again)."""
    count = _count(x.shape, axes)
    centered = x - _expand(summation(x, axes) / count, x.shape, axes)
    var = summation(centered * centered, axes) / count
    inv_std = _expand((var + eps) ** -0.5, x.shape, axes)
    return centered * inv_std, inv_std


def _normalize_gradient(g, x_hat, inv_std, axes):
    """Normalize's input gradient for the output gradient g, from ops."""
    count = _count(x_hat.shape, axes)
    g_mean = _expand(summation(g, axes) / count, x_hat.shape, axes)
    gx_mean = _expand(summation(g * x_hat, axes) / count, x_hat.shape, axes)
    return (g - g_mean - x_hat * gx_mean) * inv_std


def _normalize_gradient_arrays(g, x_hat, inv_std, axes):
    """The same on arrays (no graph to record): a few passes over the forward's x_hat;
    `inv_std` has the axes kept."""
    count = _count(x_hat.shape, axes)

    def expanded_mean(a):
        return array_api.broadcast_to(array_api.sum(a, axis=axes, keepdims=True) / count,
                                      x_hat.shape)

    return (g - expanded_mean(g) - x_hat * expanded_mean(g * x_hat)) * \
        array_api.broadcast_to(inv_std, x_hat.shape)


class BatchNormalize(TensorOp):
    """normalize(x) * weight + bias over every axis but `axis`, with weight and bias of shape
    (C,) along `axis`: BatchNorm's training forward as one op, so that a device's fused
    kernels (cpu_numpy(): fused_cpu's batch_norm and batch_norm_grad, two passes over x each
    way) can replace its composite's passes (Normalize's, then a multiply and an add).

    Statistics as Normalize's (`mean`, `var`, `inv_std`, the axes kept; `with_statistics`).
    With g the output's gradient and sums over the normalised axes,

        gbias = sum(g),   gweight = sum(g * x_hat),   gx = Normalize's gradient of g * weight.

    With no graph to record that is the fused kernel or array passes; otherwise it is built
    from ops on x, weight and g, so gradient penalties can differentiate it again.
    """

    def __init__(self, axis=1, eps=1e-5):
        self.axis, self.eps = axis, eps.item() if hasattr(eps, "item") else eps

    def __call__(self, x, weight, bias):
        return self.with_statistics(x, weight, bias)[0]

    def with_statistics(self, x, weight, bias):
        """(y, mean, var): the output and this application's statistics as arrays."""
        return _applied_with_statistics(self, [x, weight, bias])

    def _axes(self, shape, *vectors):
        """(channel axis, the axes normalised over), checking that weight and bias fit."""
        (axis,) = _normalize_axes(self.axis, len(shape), "batch_normalize")
        if len(shape) < 2 or any(tuple(v.shape) != (shape[axis],) for v in vectors):
            raise ValueError(f"batch_normalize: expected x with at least 2 dims and weight "
                             f"and bias of shape ({shape[axis]},), got x {tuple(shape)}, "
                             f"weight and bias {[tuple(v.shape) for v in vectors]}")
        return axis, tuple(i for i in range(len(shape)) if i != axis)

    def compute(self, x, weight, bias):
        axis, axes = self._axes(x.shape, weight, bias)
        kept = _kept_shape(x.shape, axes)
        fused = array_api.fused("batch_norm", x, weight, bias, axis=axis, eps=self.eps)
        if fused is not None:
            y, *stats = fused
            self.mean, self.var, self.inv_std = (array_api.reshape(s, kept) for s in stats)
            self.x_hat = None  # the gradient recomputes it from x
            return y
        normalize = Normalize(axes, self.eps)
        self.x_hat = normalize.compute(x)
        self.mean, self.var, self.inv_std = normalize.mean, normalize.var, normalize.inv_std
        return self.x_hat * array_api.broadcast_to(array_api.reshape(weight, kept), x.shape) \
            + array_api.broadcast_to(array_api.reshape(bias, kept), x.shape)

    def gradient(self, out_grad, node):
        x, weight, _ = node.inputs
        axis, axes = self._axes(x.shape)
        if records_graph(out_grad, *node.inputs):
            x_hat, inv_std = _normalized(x, axes, self.eps)
            gx = _normalize_gradient(out_grad * _expand(weight, x.shape, axes), x_hat, inv_std,
                                     axes)
            return gx, summation(out_grad * x_hat, axes), summation(out_grad, axes)
        g, x, weight = (v.realize_cached_data() for v in (out_grad, x, weight))
        fused = array_api.fused("batch_norm_grad", x, g, weight, self.mean, self.inv_std,
                                axis=axis)
        if fused is None:
            fused = self._gradient_arrays(g, x, weight, axes)
        return tuple(Tensor.make_const(a) for a in fused)

    def _gradient_arrays(self, g, x, weight, axes):
        """(gx, gweight, gbias) in array passes: the composite of the fused kernel."""
        def expand(a):
            return array_api.broadcast_to(a, x.shape)

        x_hat = self.x_hat if self.x_hat is not None else \
            (x - expand(self.mean)) * expand(self.inv_std)
        weight = expand(array_api.reshape(weight, _kept_shape(x.shape, axes)))
        gx = _normalize_gradient_arrays(g * weight, x_hat, self.inv_std, axes)
        return gx, array_api.sum(g * x_hat, axis=axes), array_api.sum(g, axis=axes)


def batch_normalize(x, weight, bias, axis=1, eps=1e-5):
    return BatchNormalize(axis, eps)(x, weight, bias)
