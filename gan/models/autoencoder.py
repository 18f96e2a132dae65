"""The adversarial autoencoder's and the VAE's networks: a small conv encoder and decoder for
28x28 images (MNIST).

    Encoder  (N, 1, 28, 28) -> codes (N, latent_dim)
             conv 4x4 s2 (28 -> 14, width) LeakyReLU(0.2), conv 4x4 s2 (14 -> 7, 2 width)
             LeakyReLU(0.2), flatten, Linear(2 width * 49 -> hidden) LeakyReLU(0.2),
             Linear(hidden -> latent_dim): the codes (`head`)
             variational=True adds a second head, Linear(hidden -> latent_dim), the
             log-variance: forward returns (mean, log_variance)
    Decoder  codes (N, latent_dim) -> images (N, 1, 28, 28) in [-1, 1]
             Linear(latent_dim -> hidden) ReLU, Linear(hidden -> 2 width * 49) ReLU,
             reshape to (2 width, 7, 7), conv-transpose 4x4 s2 (7 -> 14, width) ReLU,
             conv-transpose 4x4 s2 (14 -> 28, 1): the logits l (`logits(z)`, `last_layer`)
             forward returns tanh(l / 2) = 2 sigmoid(l) - 1

The decoder's images are on the [-1, 1] scale of the data and of gan.metrics (the DCGAN's
tanh range), and its logits are those of a Bernoulli likelihood of the pixels on [0, 1]:
sigmoid(l) = (image + 1) / 2, so the reconstruction losses (gan.recipes.aae) take the BCE on
the logits directly. No normalisation layers: a code or an image depends on its own input
only, in training and in evaluation alike.

    LabelledCodeCritic  D(z, y) for the AAE with labels (Makhzani et al. 2016, sec. 2.3 and
                        fig. 4): gan.models.mlp.MLPCritic on the code joined with the label's
                        one-hot vector, so D compares codes with the prior's component of
                        their own digit
"""
from needle import nn, ops

from .mlp import MLPCritic

__all__ = ["Encoder", "Decoder", "LabelledCodeCritic", "IMAGE_SHAPE"]

IMAGE_SHAPE = (1, 28, 28)


def _check_images(model, x):
    if len(x.shape) != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"{model}: expected images of shape (N, 1, 28, 28), got {x.shape}")


class Encoder(nn.Module):
    """images (N, 1, 28, 28) -> codes (N, latent_dim), or (mean, log_variance) with
    variational=True (see the module docstring)."""

    def __init__(self, latent_dim=2, width=32, hidden=256, variational=False, device=None,
                 dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.latent_dim, self.variational = int(latent_dim), bool(variational)
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1, **kw), nn.LeakyReLU(0.2),
            # state size: (N, width, 14, 14)
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, **kw), nn.LeakyReLU(0.2),
            # state size: (N, 2 width, 7, 7)
            nn.Flatten(),
            nn.Linear(2 * width * 49, hidden, **kw), nn.LeakyReLU(0.2))
        # state size: (N, hidden)
        self.head = nn.Linear(hidden, latent_dim, **kw)
        self.log_variance = nn.Linear(hidden, latent_dim, **kw) if variational else None

    @property
    def last_layer(self):
        """The layer that makes the codes (the adaptive weight's gradient norms are taken at
        its weight)."""
        return self.head

    def forward(self, x):
        _check_images("Encoder", x)
        h = self.features(x)
        if self.variational:
            return self.head(h), self.log_variance(h)
        return self.head(h)


class Decoder(nn.Module):
    """codes (N, latent_dim) -> images (N, 1, 28, 28) in [-1, 1]; `logits(z)` are the
    Bernoulli logits of the pixels on [0, 1] (see the module docstring)."""

    def __init__(self, latent_dim=2, width=32, hidden=256, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.latent_dim, self.width = int(latent_dim), int(width)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, hidden, **kw), nn.ReLU(),
            nn.Linear(hidden, 2 * width * 49, **kw), nn.ReLU())
        # state size: (N, 2 width * 49), reshaped to (N, 2 width, 7, 7)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, **kw), nn.ReLU())
        # state size: (N, width, 14, 14)
        self.last_layer = nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1, **kw)
        # state size: (N, 1, 28, 28)

    def logits(self, z):
        if len(z.shape) != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"Decoder: expected codes of shape (N, {self.latent_dim}), got "
                             f"{z.shape}")
        h = ops.reshape(self.project(z), (z.shape[0], 2 * self.width, 7, 7))
        return self.last_layer(self.up(h))

    def forward(self, z):
        return ops.tanh(self.logits(z) * 0.5)


class LabelledCodeCritic(nn.Module):
    """(codes (N, latent_dim), one-hot labels (N, classes)) -> scores (N,): an MLPCritic on
    the two joined (see the module docstring)."""

    def __init__(self, latent_dim=2, classes=10, hidden=256, layers=2, device=None,
                 dtype="float32"):
        super().__init__()
        self.latent_dim, self.classes = int(latent_dim), int(classes)
        self.critic = MLPCritic(latent_dim + classes, hidden, layers, device=device,
                                dtype=dtype)

    def forward(self, z, one_hot):
        if len(z.shape) != 2 or z.shape[1] != self.latent_dim or \
                tuple(one_hot.shape) != (z.shape[0], self.classes):
            raise ValueError(f"LabelledCodeCritic: expected codes (N, {self.latent_dim}) and "
                             f"one-hot labels (N, {self.classes}), got {z.shape} and "
                             f"{one_hot.shape}")
        return self.critic(ops.concatenate([z, one_hot], axis=1))
