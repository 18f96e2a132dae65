"""DCGAN generator and discriminator (Radford et al. 2016) for 28x28, 32x32 and 64x64 images.

At 28x28 these are the pytorch/examples-style MNIST models: G 100-256-128-1 and D 1-64-128-1
with width=64 (the benchmark's architecture). Images are NCHW in [-1, 1] (G ends in tanh);
D returns one logit per image, shape (N,).

norm="syncbatch" (both models) swaps BatchNorm2d for nn.SyncBatchNorm, for data-parallel
training (needle.distributed): with plain BatchNorm each rank normalises over its own slice
of the global batch, with SyncBatchNorm over the whole global batch, as one process would.
"""
from needle import nn, ops

from ..errors import ImageShapeError
from .init import dcgan_init
from .minibatch_std import MinibatchStd

__all__ = ["Generator", "Discriminator", "SUPPORTED_SIZES"]

SUPPORTED_SIZES = (28, 32, 64)


_NORMS = {"batch": nn.BatchNorm2d, "syncbatch": nn.SyncBatchNorm}


def _norm_layer(model, norm, allowed):
    """The normalisation class `norm` names, or a one-line error naming the model."""
    if norm not in allowed:
        raise ValueError(f"{model}: norm must be one of {', '.join(map(repr, allowed))}, "
                         f"got {norm!r}")
    return _NORMS.get(norm)


def _plan(image_size, width):
    """(first spatial size, channel widths from the first feature map to the last)."""
    if image_size not in SUPPORTED_SIZES:
        raise ImageShapeError(f"DCGAN models support image sizes {SUPPORTED_SIZES}, "
                              f"got {image_size}")
    if image_size == 28:
        return 7, [width * 4, width * 2]
    doublings = {32: 3, 64: 4}[image_size]
    return 4, [width * 2 ** (doublings - 1 - i) for i in range(doublings)]


class Generator(nn.Module):
    """z (N, latent_dim) -> images (N, channels, S, S) in [-1, 1].

    norm="batch" as in DCGAN; norm="syncbatch" for data-parallel runs (see the module).
    """

    def __init__(self, latent_dim=100, channels=1, image_size=28, width=64, device=None,
                 dtype="float32", norm="batch"):
        super().__init__()
        Norm = _norm_layer("Generator", norm, ("batch", "syncbatch"))
        self.latent_dim, self.channels, self.image_size = latent_dim, channels, image_size
        start, widths = _plan(image_size, width)
        kw = dict(device=device, dtype=dtype)
        layers = [nn.ConvTranspose2d(latent_dim, widths[0], start, bias=False, **kw),
                  Norm(widths[0], **kw), nn.ReLU()]
        # state size: (N, widths[0], start, start)
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False, **kw),
                       Norm(c_out, **kw), nn.ReLU()]
            # state size doubles: (N, c_out, 2s, 2s)
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, stride=2, padding=1, bias=False,
                                      **kw), nn.Tanh()]
        # state size: (N, channels, image_size, image_size)
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z):
        if len(z.shape) != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"Generator: expected z of shape (N, {self.latent_dim}), "
                             f"got {z.shape}")
        return self.net(ops.reshape(z, (z.shape[0], self.latent_dim, 1, 1)))


class Discriminator(nn.Module):
    """images (N, channels, S, S) -> logits (N,).

    norm="batch" as in DCGAN; norm="none" for gradient penalties, where batch statistics
    would couple the samples whose gradients are penalised (Gulrajani et al. 2017, sec. 4);
    norm="syncbatch" for data-parallel runs (see the module). minibatch_std=True puts a
    gan.models.MinibatchStd layer between the features and the head (Karras et al. 2018).
    `features(x)` are the last feature maps, what feature matching compares.
    """

    def __init__(self, channels=1, image_size=28, width=64, norm="batch", slope=0.2,
                 device=None, dtype="float32", minibatch_std=False):
        super().__init__()
        Norm = _norm_layer("Discriminator", norm, ("batch", "syncbatch", "none"))
        self.channels, self.image_size = channels, image_size
        start, generator_widths = _plan(image_size, width)
        widths = [width * 2 ** i for i in range(len(generator_widths))]
        kw = dict(device=device, dtype=dtype)
        layers = [nn.Conv2d(channels, widths[0], 4, stride=2, padding=1, bias=False, **kw),
                  nn.LeakyReLU(slope)]
        # state size: (N, widths[0], S/2, S/2)
        for c_in, c_out in zip(widths, widths[1:]):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False, **kw))
            if Norm is not None:
                layers.append(Norm(c_out, **kw))
            layers.append(nn.LeakyReLU(slope))
            # state size halves: (N, c_out, s/2, s/2)
        self.features = nn.Sequential(*layers)
        # state size: (N, widths[-1], start, start)
        self.minibatch_std = MinibatchStd() if minibatch_std else None
        # with it, one more channel: (N, widths[-1] + 1, start, start)
        self.head = nn.Conv2d(widths[-1] + bool(minibatch_std), 1, start, bias=False, **kw)
        self.feature_shape = (widths[-1], start, start)
        dcgan_init(self)

    def forward(self, x):
        expected = (self.channels, self.image_size, self.image_size)
        if len(x.shape) != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"Discriminator: expected images of shape (N, {expected[0]}, "
                             f"{expected[1]}, {expected[2]}), got {x.shape}")
        features = self.features(x)
        if self.minibatch_std is not None:
            features = self.minibatch_std(features)
        return ops.reshape(self.head(features), (x.shape[0],))
