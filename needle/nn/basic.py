"""Basic layers: Linear, activations, containers, Dropout, Embedding (COURSE_API.md 6.2).

Layers that own parameters take `device=None, dtype="float32"` and create their parameters
there. Random initial values come from NumPy's global RNG in construction order, so seeds
reproduce the course's golden values.
"""
from functools import reduce
from operator import mul

from .. import init, ops
from ..autograd import Tensor
from .module import Module, Parameter

__all__ = ["Identity", "Linear", "Flatten", "ReLU", "LeakyReLU", "Tanh", "Sigmoid",
           "Sequential", "Residual", "Dropout", "Embedding"]


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    """y = x W + b over the last axis of x.

    Shapes: x (..., in_features) -> y (..., out_features). `weight` is (in_features,
    out_features) = kaiming_uniform(in_features, out_features), drawn first; `bias` is
    kaiming_uniform(out_features, 1) reshaped to (1, out_features). Note the course's bias
    fan_in is out_features (odd, but it fixes the golden values). A bias later replaced by a
    1-D (out_features,) tensor works too.

        layer = Linear(10, 3)
        layer(Tensor(np.ones((4, 7, 10)))).shape    # (4, 7, 3)
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype="float32"):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(init.kaiming_uniform(in_features, out_features,
                                                     device=device, dtype=dtype))
        self.bias = None
        if bias:
            self.bias = Parameter(init.kaiming_uniform(out_features, 1, device=device,
                                                       dtype=dtype).reshape((1, out_features)))

    def forward(self, x):
        in_features, out_features = self.weight.shape
        if x.shape[-1] != in_features:
            raise ValueError(f"Linear: expected input with last axis {in_features}, "
                             f"got shape {x.shape}")
        # N-D input: one 2-D GEMM over all leading axes, rather than a batched matmul.
        flat = x if x.ndim == 2 else ops.reshape(x, (-1, in_features))
        y = flat @ self.weight
        if self.bias is not None:
            bias = self.bias if self.bias.ndim == 2 else ops.reshape(self.bias, (1, out_features))
            y = y + ops.broadcast_to(bias, y.shape)
        return y if x.ndim == 2 else ops.reshape(y, x.shape[:-1] + (out_features,))


class Flatten(Module):
    """(B, d1, d2, ...) -> (B, d1 * d2 * ...)."""

    def forward(self, x):
        return ops.reshape(x, (x.shape[0], reduce(mul, x.shape[1:], 1)))


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class LeakyReLU(Module):
    """max(x, 0) + negative_slope * min(x, 0), PyTorch's signature and default."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return ops.leaky_relu(x, self.negative_slope)


class Tanh(Module):
    def forward(self, x):
        return ops.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


class Sequential(Module):
    """Apply `modules` (the attribute the course names) in order."""

    def __init__(self, *modules):
        super().__init__()
        self.modules = modules

    def forward(self, x):
        for module in self.modules:
            x = module(x)
        return x


class Residual(Module):
    """fn(x) + x."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class Dropout(Module):
    """Zero each element with probability p in training, scaling the rest by 1 / (1 - p).

    The mask is randb(p=1 - p), i.e. rand <= 1 - p, drawn from NumPy's global RNG (or
    cuda()'s own generator after `use_device_rng()`) on every training call (even for p = 0,
    as the course does, so RNG streams line up). Evaluation mode is the identity and draws
    nothing.
    """

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        mask = init.randb(*x.shape, p=1 - self.p, device=x.device, dtype=x.dtype)
        return x * mask / (1 - self.p)


class Embedding(Module):
    """Look up rows of `weight` (num_embeddings, embedding_dim), initialised N(0, 1).

    Input: word ids stored as floats, any shape, e.g. (T, B). Output: shape + (embedding_dim,),
    computed as one_hot(ids) @ weight so the gradient reaches `weight` through matmul.
    """

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype="float32"):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = Parameter(init.randn(num_embeddings, embedding_dim, device=device,
                                           dtype=dtype))

    def forward(self, x: Tensor):
        one_hot = init.one_hot(self.num_embeddings, x, device=self.weight.device,
                               dtype=self.weight.dtype)
        rows = ops.reshape(one_hot, (-1, self.num_embeddings)) @ self.weight
        return ops.reshape(rows, x.shape + (self.embedding_dim,))
