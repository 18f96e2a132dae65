"""Max pooling on NCHW input, like PyTorch's MaxPool2d with stride = kernel_size."""
from .. import ops
from .module import Module

__all__ = ["max_pool2d", "MaxPool2d"]


def max_pool2d(x, kernel_size=2):
    """k x k max pooling, stride k, of (N, C, H, W) with H and W multiples of k: the image
    cut into (N, C, H/k, k, W/k, k) blocks and ops.maximum over each block's rows, then its
    columns. A tie shares the gradient equally (PyTorch gives it all to one element)."""
    k = int(kernel_size)
    if len(x.shape) != 4 or k < 1:
        raise ValueError(f"max_pool2d: expected (N, C, H, W) input and kernel_size >= 1, got "
                         f"shape {x.shape} and kernel_size {kernel_size}")
    n, c, h, w = x.shape
    if h % k or w % k:
        raise ValueError(f"max_pool2d: height and width must be multiples of kernel_size "
                         f"{k}, got shape {x.shape}")
    blocks = ops.reshape(x, (n, c, h // k, k, w // k, k))
    return _maximum_along(_maximum_along(blocks, 3), 4)  # rows, then the columns left


def _maximum_along(x, axis):
    """The elementwise maximum of x's slices along `axis`, which goes away."""
    pieces = ops.split(x, axis)
    result = pieces[0]
    for i in range(1, x.shape[axis]):
        result = ops.maximum(result, pieces[i])
    return result


class MaxPool2d(Module):
    """`max_pool2d` as a layer: (N, C, H, W) -> (N, C, H/k, W/k)."""

    def __init__(self, kernel_size=2):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x):
        return max_pool2d(x, self.kernel_size)

    def __repr__(self):
        return f"MaxPool2d(kernel_size={self.kernel_size})"
