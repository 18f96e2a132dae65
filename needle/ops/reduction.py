"""Reductions: summation, mean, logsumexp and logsoftmax."""
from ..autograd import TensorOp
from ..backend_selection import array_api
from .shape import broadcast_to, reshape

__all__ = ["Summation", "LogSumExp", "LogSoftmax", "summation", "mean", "logsumexp",
           "logsoftmax"]


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
    count = 1
    for axis in _normalize_axes(axes, len(a.shape), "mean"):
        count *= a.shape[axis]
    return summation(a, axes) / count


class LogSumExp(TensorOp):
    """log(sum(exp(a), axes)), shifted by the max so it never overflows.

    Its gradient is the softmax over the reduced axes.
    """

    def __init__(self, axes=None):
        self.axes = axes

    def compute(self, a):
        axes = _normalize_axes(self.axes, a.ndim, "logsumexp")
        top = array_api.max(a, axis=axes, keepdims=True)
        shifted = array_api.exp(a - array_api.broadcast_to(top, a.shape))
        total = array_api.log(array_api.sum(shifted, axis=axes, keepdims=True)) + top
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
