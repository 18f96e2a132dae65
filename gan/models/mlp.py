"""Small fully connected G and D for 2-D toy data (the Gaussian mixtures in gan.mixtures).

As in Gulrajani et al.'s toy experiments: ReLU MLPs, 2-D noise, no normalisation in the
critic (a gradient penalty needs per-sample gradients), a linear output on both sides.
"""
from needle import nn, ops

__all__ = ["MLPGenerator", "MLPCritic"]


def _trunk(in_features, hidden, layers, device, dtype):
    """`layers` blocks of Linear + ReLU: (N, in_features) -> (N, hidden)."""
    if layers < 1:
        raise ValueError(f"MLP: layers must be >= 1, got {layers}")
    blocks = []
    for i in range(layers):
        blocks += [nn.Linear(in_features if i == 0 else hidden, hidden, device=device,
                             dtype=dtype), nn.ReLU()]
    return blocks


class MLPGenerator(nn.Module):
    """z (N, latent_dim) -> points (N, out_features), through `layers` hidden ReLU layers."""

    def __init__(self, latent_dim=2, out_features=2, hidden=128, layers=3, device=None,
                 dtype="float32"):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(*_trunk(latent_dim, hidden, layers, device, dtype),
                                 nn.Linear(hidden, out_features, device=device, dtype=dtype))
        # state size: (N, hidden) after each block, (N, out_features) at the end

    def forward(self, z):
        if len(z.shape) != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"MLPGenerator: expected z of shape (N, {self.latent_dim}), "
                             f"got {z.shape}")
        return self.net(z)


class MLPCritic(nn.Module):
    """points (N, in_features) -> scores (N,), through `layers` hidden ReLU layers."""

    def __init__(self, in_features=2, hidden=128, layers=3, device=None, dtype="float32"):
        super().__init__()
        self.in_features = in_features
        self.net = nn.Sequential(*_trunk(in_features, hidden, layers, device, dtype),
                                 nn.Linear(hidden, 1, device=device, dtype=dtype))
        # state size: (N, hidden) after each block, (N, 1) at the end

    def forward(self, x):
        if len(x.shape) != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"MLPCritic: expected points of shape (N, {self.in_features}), "
                             f"got {x.shape}")
        return ops.reshape(self.net(x), (x.shape[0],))
