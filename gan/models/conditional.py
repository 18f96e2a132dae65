"""Class-conditional DCGAN: a label-embedding generator and a projection discriminator.

ConditionalGenerator: h = z * embed_G(y) (elementwise), then the DCGAN generator trunk.
ConditionalDiscriminator: the projection discriminator of Miyato & Koyama (2018), eq. 3:

    D(x, y) = psi(phi(x)) + embed_D(y) . phi(x)

phi = the DCGAN discriminator's `features` (flattened), psi = its `head`. Both models reuse
gan.models.dcgan's Generator / Discriminator as submodules (`trunk`) instead of copying them.

Labels y are a Tensor (or array) of integer class ids, stored as floats or ints, shape (N,).
A conditional model called without labels, or with ids outside [0, num_classes) or not whole
numbers, raises gan.LabelError (a ValueError) naming the model and the offending values:
`init.one_hot` would otherwise silently wrap a -1 to the last class and truncate 2.5 to 2.
"""
from functools import reduce
from operator import mul

import numpy as np

from needle import init, ops
from needle.autograd import Tensor
from needle.nn import Module, Parameter

from ..errors import LabelError  # a ValueError subclass
from .dcgan import Discriminator, Generator

__all__ = ["ConditionalGenerator", "ConditionalDiscriminator", "check_labels"]


def check_labels(model, y, batch, num_classes, device):
    """y as a Tensor on `device`, after checking it holds `batch` ids in [0, num_classes)."""
    if y is None:
        raise LabelError(f"{model}: labels are required (call it as {model}(x, y) with y the "
                         f"class ids in [0, {num_classes}), shape ({batch},))")
    values = y.numpy() if isinstance(y, Tensor) else np.asarray(y)
    if values.shape != (batch,):
        raise LabelError(f"{model}: expected labels of shape ({batch},), got {values.shape}")
    bad = values[~np.isin(values, np.arange(num_classes))]
    if bad.size:
        shown = np.unique(bad)[:8].tolist()
        raise LabelError(f"{model}: labels must be integer class ids in [0, {num_classes}); "
                         f"got {shown} ({bad.size} of {batch} labels)")
    if isinstance(y, Tensor):
        return y
    return Tensor(values.astype(np.float32), device=device, requires_grad=False)


def _embed(table, y):
    """Rows of `table` (num_classes, D) picked by y (N,): one_hot(y) @ table, shape (N, D).

    Through matmul, so the gradient reaches only the rows of the classes present.
    """
    num_classes = table.shape[0]
    return init.one_hot(num_classes, y, device=table.device, dtype=table.dtype) @ table


class ConditionalGenerator(Module):
    """(z (N, latent_dim), y (N,)) -> images (N, channels, S, S) in [-1, 1].

    The label embedding E (num_classes, latent_dim) is initialised N(0, 1), as nn.Embedding
    is: with z ~ N(0, 1) independent of it, each entry of z * E[y] has mean 0 and variance 1,
    so the trunk sees inputs on the scale it would unconditionally.
    """

    def __init__(self, num_classes=10, latent_dim=100, channels=1, image_size=28, width=64,
                 device=None, dtype="float32"):
        super().__init__()
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.channels, self.image_size = channels, image_size
        self.trunk = Generator(latent_dim, channels, image_size, width, device=device,
                               dtype=dtype)
        self.embedding = Parameter(init.randn(num_classes, latent_dim, device=device,
                                              dtype=dtype))

    def forward(self, z, y=None):
        if len(z.shape) != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"ConditionalGenerator: expected z of shape (N, "
                             f"{self.latent_dim}), got {z.shape}")
        y = check_labels("ConditionalGenerator", y, z.shape[0], self.num_classes, z.device)
        h = z * _embed(self.embedding, y)
        # state size: (N, latent_dim), z scaled per class
        images = self.trunk(h)
        # state size: (N, channels, image_size, image_size)
        return images


class ConditionalDiscriminator(Module):
    """(images (N, channels, S, S), y (N,)) -> logits (N,): a projection discriminator.

    The embedding V (num_classes, C * s * s) dots the flattened features phi(x); it starts
    N(0, 0.02^2), the DCGAN init of the head psi, because y^T V phi(x) is a class-specific
    head of the same size (Miyato & Koyama 2018, eq. 3), so both terms start on one scale.
    norm as in Discriminator ("none" for gradient penalties).
    """

    def __init__(self, num_classes=10, channels=1, image_size=28, width=64, norm="batch",
                 slope=0.2, device=None, dtype="float32"):
        super().__init__()
        self.num_classes, self.channels, self.image_size = num_classes, channels, image_size
        self.trunk = Discriminator(channels, image_size, width, norm=norm, slope=slope,
                                   device=device, dtype=dtype)
        self.feature_dim = reduce(mul, self.trunk.feature_shape, 1)
        self.embedding = Parameter(init.normal(num_classes, self.feature_dim, std=0.02,
                                               device=device, dtype=dtype))

    def forward(self, x, y=None):
        expected = (self.channels, self.image_size, self.image_size)
        if len(x.shape) != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"ConditionalDiscriminator: expected images of shape (N, "
                             f"{expected[0]}, {expected[1]}, {expected[2]}), got {x.shape}")
        n = x.shape[0]
        y = check_labels("ConditionalDiscriminator", y, n, self.num_classes, x.device)
        features = self.trunk.features(x)
        # state size: (N, C, s, s) = (N, *trunk.feature_shape)
        unconditional = ops.reshape(self.trunk.head(features), (n,))
        # psi(phi(x)): (N,)
        flat = ops.reshape(features, (n, self.feature_dim))
        projection = ops.summation(_embed(self.embedding, y) * flat, axes=(1,))
        # embed(y) . phi(x): (N,)
        return unconditional + projection
