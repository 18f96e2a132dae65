"""Shape ops: views and rearrangements whose gradients rearrange back."""
from ..autograd import TensorOp, TensorTuple, TensorTupleOp
from ..backend_selection import array_api, device_of

__all__ = ["Reshape", "BroadcastTo", "Transpose", "Permute", "Stack", "Split", "Concatenate",
           "Sections", "Flip", "Dilate", "UnDilate", "reshape", "broadcast_to", "transpose",
           "permute", "stack", "split", "concatenate", "sections", "flip", "dilate",
           "undilate", "sum_to_shape"]


def _resolve_shape(shape, size, name, old_shape):
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) == 1:
        known = 1
        for d in shape:
            known *= d if d != -1 else 1
        shape = tuple(size // known if d == -1 and known else d for d in shape)
    total = 1
    for d in shape:
        total *= d
    if total != size or any(d < 0 for d in shape):
        raise ValueError(f"{name}: cannot reshape shape {old_shape} ({size} elements) "
                         f"into shape {shape}")
    return shape


class Reshape(TensorOp):
    def __init__(self, shape):
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)

    def compute(self, a):
        shape = _resolve_shape(self.shape, a.size, "reshape", a.shape)
        return array_api.reshape(a, shape)

    def gradient(self, out_grad, node):
        return reshape(out_grad, node.inputs[0].shape)


def reshape(a, shape):
    return Reshape(shape)(a)


class BroadcastTo(TensorOp):
    """NumPy broadcasting rules, including new leading axes and 0-d sources."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def compute(self, a):
        try:
            return array_api.broadcast_to(a, self.shape)
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast shape {a.shape} "
                             f"to {self.shape}") from None

    def gradient(self, out_grad, node):
        return sum_to_shape(out_grad, node.inputs[0].shape)


def broadcast_to(a, shape):
    return BroadcastTo(shape)(a)


def sum_to_shape(x, shape):
    """Sum `x` over the axes that broadcasting `shape` to x.shape created (composite)."""
    from .reduction import summation
    shape = tuple(shape)
    lead = len(x.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    if axes:
        x = summation(x, axes)
    return x if x.shape == shape else reshape(x, shape)


class Transpose(TensorOp):
    """Swap two axes (the last two when `axes` is None), as the course defines transpose."""

    def __init__(self, axes=None):
        self.axes = axes

    def compute(self, a):
        i, j = (-1, -2) if self.axes is None else self.axes
        return array_api.swapaxes(a, i, j)

    def gradient(self, out_grad, node):
        return transpose(out_grad, self.axes)


def transpose(a, axes=None):
    return Transpose(axes)(a)


class Permute(TensorOp):
    """A full axis permutation (NumPy's transpose)."""

    def __init__(self, axes):
        self.axes = tuple(axes)

    def compute(self, a):
        if sorted(self.axes) != list(range(a.ndim)):
            raise ValueError(f"permute: axes {self.axes} are not a permutation of "
                             f"the {a.ndim} axes of shape {a.shape}")
        return array_api.transpose(a, self.axes)

    def gradient(self, out_grad, node):
        inverse = [0] * len(self.axes)
        for position, axis in enumerate(self.axes):
            inverse[axis] = position
        return permute(out_grad, inverse)


def permute(a, axes):
    return Permute(axes)(a)


class Stack(TensorOp):
    """Stack a TensorTuple of equal-shape Tensors along a new axis."""

    def __init__(self, axis):
        self.axis = axis

    def compute(self, args):
        shapes = {a.shape for a in args}
        if len(shapes) != 1:
            raise ValueError(f"stack: all inputs need one shape, got {sorted(shapes)}")
        return array_api.stack(list(args), axis=self.axis)

    def gradient(self, out_grad, node):
        return split(out_grad, self.axis)


def stack(args, axis):
    from .tuple import make_tuple
    return Stack(axis)(make_tuple(*args))


class Split(TensorTupleOp):
    """Split along `axis` into a TensorTuple of pieces without that axis."""

    def __init__(self, axis):
        self.axis = axis

    def compute(self, a):
        return tuple(array_api.split(a, axis=self.axis))

    def gradient(self, out_grad, node):
        return stack(list(out_grad.tuple()) if isinstance(out_grad, TensorTuple) else out_grad,
                     self.axis)


def split(a, axis):
    return Split(axis)(a)


class Concatenate(TensorOp):
    """Join a TensorTuple along an existing axis (U-Net skips, channel-wise conditions)."""

    def __init__(self, axis):
        self.axis = axis

    def compute(self, args):
        return array_api.concatenate(list(args), axis=self.axis)

    def gradient(self, out_grad, node):
        return sections(out_grad, [t.shape[self.axis] for t in node.inputs[0].tuple()],
                        self.axis)


def concatenate(args, axis):
    from .tuple import make_tuple
    return Concatenate(axis)(make_tuple(*args))


class Sections(TensorTupleOp):
    """Cut along `axis` into consecutive pieces of `sizes` (the inverse of concatenate)."""

    def __init__(self, sizes, axis):
        self.sizes, self.axis = tuple(int(s) for s in sizes), axis

    def compute(self, a):
        if sum(self.sizes) != a.shape[self.axis] or min(self.sizes, default=0) < 0:
            raise ValueError(f"sections: sizes {self.sizes} do not cut axis {self.axis} of "
                             f"shape {a.shape}")
        return tuple(array_api.sections(a, self.sizes, axis=self.axis))

    def gradient(self, out_grad, node):
        pieces = list(out_grad.tuple()) if isinstance(out_grad, TensorTuple) else out_grad
        return concatenate(pieces, self.axis)


def sections(a, sizes, axis):
    return Sections(sizes, axis)(a)


class Flip(TensorOp):
    def __init__(self, axes):
        self.axes = (axes,) if isinstance(axes, int) else tuple(axes)

    def compute(self, a):
        return array_api.flip(a, self.axes)

    def gradient(self, out_grad, node):
        return flip(out_grad, self.axes)


def flip(a, axes):
    return Flip(axes)(a)


def _step_slices(ndim, axes, step):
    return tuple(slice(None, None, step) if i in axes else slice(None) for i in range(ndim))


def _dilation_axes(axes, ndim):
    """Non-negative axes; axes beyond the rank are ignored, as in the course."""
    return tuple(axis % ndim for axis in axes if -ndim <= axis < ndim)


class Dilate(TensorOp):
    """Insert `dilation` zeros after every element along `axes`: length n -> n*(dilation+1).

    Axes beyond the input's rank are ignored, as in the course. `shape` (set only by
    undilate's gradient) fixes the output shape when the undilated length was not a multiple
    of dilation + 1.
    """

    def __init__(self, axes, dilation, shape=None):
        self.axes = (axes,) if isinstance(axes, int) else tuple(axes)
        self.dilation = dilation
        self.shape = shape

    def compute(self, a):
        axes = _dilation_axes(self.axes, a.ndim)
        step = self.dilation + 1
        shape = self.shape or tuple(d * step if i in axes else d for i, d in enumerate(a.shape))
        out = array_api.full(shape, 0, dtype=a.dtype, device=device_of(a))
        out[_step_slices(a.ndim, axes, step)] = a
        return out

    def gradient(self, out_grad, node):
        return undilate(out_grad, self.axes, self.dilation)


def dilate(a, axes, dilation):
    return Dilate(axes, dilation)(a)


class UnDilate(TensorOp):
    """Keep every (dilation+1)-th element from index 0 along `axes` (inverse of dilate)."""

    def __init__(self, axes, dilation):
        self.axes = (axes,) if isinstance(axes, int) else tuple(axes)
        self.dilation = dilation

    def compute(self, a):
        axes = _dilation_axes(self.axes, a.ndim)
        return a[_step_slices(a.ndim, axes, self.dilation + 1)]

    def gradient(self, out_grad, node):
        return Dilate(self.axes, self.dilation, shape=node.inputs[0].shape)(out_grad)


def undilate(a, axes, dilation):
    return UnDilate(axes, dilation)(a)
