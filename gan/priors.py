"""The priors an adversarial autoencoder's codes are made to match (Makhzani et al. 2016).

    Normal(dim)        the standard normal N(0, I) in `dim` dimensions
    Mixture10()        Makhzani's 2-D mixture of 10 Gaussians (their figures 2 and 4): ten
                       equally weighted components on a circle, each elongated along its
                       radius

Mixture10's geometry, component k = 0..9 (the values of the common reimplementations of the
paper's sampler):

    angle      theta_k = 2 pi k / 10
    centre     mu_k = radius (cos theta_k, sin theta_k),            radius = 1.4
    spread     std 0.5 along the radius (cos theta_k, sin theta_k),
               std 0.1 across it (-sin theta_k, cos theta_k)
    sample     mu_k + R(theta_k) (0.5 a, 0.1 b),  a, b ~ N(0, 1),  R the rotation by theta_k

so the covariance of component k is R diag(0.25, 0.01) R^T and the mixture's mean is 0.

    prior.sample(n, rng)                 (n, dim) float32 codes from rng (a RandomState)
    prior.sample(n, rng, labels=y)       Mixture10: component y[i] for code i (the paper's
                                         semi-supervised variant: a digit's own component)
    prior.sample_with_labels(n, rng)     (codes, components drawn uniformly)

Sampling draws from the RandomState it is given (a recipe passes np.random, whose state each
checkpoint saves; the evaluation a RandomState of its own), so it is seeded and repeatable.
"""
import math

import numpy as np

__all__ = ["Normal", "Mixture10", "PRIORS", "make_prior"]


def _check_count(prior, n):
    if int(n) != n or n < 0:
        raise ValueError(f"{prior}.sample: the count must be an integer >= 0, got {n}")
    return int(n)


class Normal:
    """N(0, I) in `dim` dimensions."""

    name = "normal"

    def __init__(self, dim):
        if int(dim) != dim or dim < 1:
            raise ValueError(f"Normal prior: dim must be an integer >= 1, got {dim}")
        self.dim = int(dim)

    def sample(self, n, rng, labels=None):
        if labels is not None:
            raise ValueError("Normal prior: it has no components to condition on labels")
        return rng.standard_normal((_check_count("Normal", n), self.dim)).astype(np.float32)

    def sample_with_labels(self, n, rng):
        raise ValueError("Normal prior: it has no components (use the mixture10 prior)")

    def __repr__(self):
        return f"Normal(dim={self.dim})"


class Mixture10:
    """Makhzani's 2-D mixture of 10 radially elongated Gaussians (see the module docstring)."""

    name = "mixture10"
    dim = 2

    components = 10

    def __init__(self, radius=1.4, radial_std=0.5, tangential_std=0.1):
        self.radius = float(radius)
        self.radial_std, self.tangential_std = float(radial_std), float(tangential_std)
        self.angles = 2 * math.pi * np.arange(self.components) / self.components
        self.centres = self.radius * np.stack([np.cos(self.angles), np.sin(self.angles)], 1)

    def covariances(self):
        """(components, 2, 2): R_k diag(radial_std^2, tangential_std^2) R_k^T."""
        c, s = np.cos(self.angles), np.sin(self.angles)
        rotations = np.stack([np.stack([c, -s], 1), np.stack([s, c], 1)], 1)  # (K, 2, 2)
        scales = np.diag([self.radial_std ** 2, self.tangential_std ** 2])
        return rotations @ scales @ rotations.transpose(0, 2, 1)

    def sample(self, n, rng, labels=None):
        n = _check_count("Mixture10", n)
        if labels is None:
            labels = rng.randint(0, self.components, n)
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != n or (n and (labels.min() < 0 or labels.max() >= self.components)):
            raise ValueError(f"Mixture10.sample: expected {n} labels in 0..{self.components - 1}"
                             f", got {len(labels)} from {labels.min() if n else None} to "
                             f"{labels.max() if n else None}")
        local = rng.standard_normal((n, 2)) * [self.radial_std, self.tangential_std]
        theta = self.angles[labels]
        c, s = np.cos(theta), np.sin(theta)
        x = c * local[:, 0] - s * local[:, 1]
        y = s * local[:, 0] + c * local[:, 1]
        return (np.stack([x, y], 1) + self.centres[labels]).astype(np.float32)

    def sample_with_labels(self, n, rng):
        labels = rng.randint(0, self.components, _check_count("Mixture10", n))
        return self.sample(n, rng, labels), labels

    def __repr__(self):
        return (f"Mixture10(radius={self.radius}, radial_std={self.radial_std}, "
                f"tangential_std={self.tangential_std})")


PRIORS = ("mixture10", "normal")


def make_prior(name, dim):
    """The prior `name` (one of PRIORS) for codes of `dim` dimensions."""
    if name == "normal":
        return Normal(dim)
    if name == "mixture10":
        if dim != 2:
            raise ValueError(f"the mixture10 prior is 2-D: latent_dim must be 2, got {dim}")
        return Mixture10()
    raise ValueError(f"unknown prior {name!r}: expected one of {', '.join(PRIORS)}")
