"""2-D Gaussian mixtures for mode-collapse checks, and the metrics that go with them.

The two standard toy targets (Metz et al. 2017, Srivastava et al. 2017 "VEEGAN",
Gulrajani et al. 2017): 8 Gaussians on a ring of radius 2, and 25 on a 5 x 5 grid with
spacing 2, each an isotropic Gaussian with a small standard deviation, mixed uniformly.

    ring8 = ring()                                  # centres (8, 2), std 0.02
    real = ring8.sample(256, np.random.RandomState(0))       # (256, 2) float32
    mode_metrics(fake, ring8.centres, ring8.std)    # {"modes_covered": 8, ...}

The evaluation rule (VEEGAN, sec. 5.1): a sample is *high quality* when it lies within
3 standard deviations of its nearest centre. A mode is *covered* when at least `min_count`
high-quality samples sit on it; the default asks for 0.8% of the samples (20 of 2,500, the
usual evaluation size), so stray samples near a centre do not count as learning the mode.
For an exact sample of the mixture, 98.9% of samples are high quality
(a 2-D Gaussian's radius is Rayleigh: P(r <= 3 std) = 1 - exp(-4.5)).
"""
import dataclasses
import math

import numpy as np

__all__ = ["GaussianMixture", "ring", "grid", "mode_metrics", "MIXTURES"]


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Uniform mixture of isotropic 2-D Gaussians: `centres` (K, 2) and a shared `std`."""

    centres: np.ndarray
    std: float

    def sample(self, n, rng):
        """n points, (n, 2) float32: a uniformly chosen centre plus N(0, std^2 I) noise.

        `rng` is a NumPy RandomState or Generator (or the np.random module itself).
        """
        modes = rng.choice(len(self.centres), size=n)
        noise = rng.standard_normal((n, 2)) * self.std
        return (self.centres[modes] + noise).astype(np.float32)

    def mode_metrics(self, samples, **kwargs):
        """mode_metrics(samples, self.centres, self.std, **kwargs)."""
        return mode_metrics(samples, self.centres, self.std, **kwargs)

    @property
    def n_modes(self):
        return len(self.centres)


def ring(n_modes=8, radius=2.0, std=0.02):
    """`n_modes` Gaussians evenly spaced on a circle of `radius`, the first at (radius, 0)."""
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(centres, float(std))


def grid(side=5, spacing=2.0, std=0.02):
    """side x side Gaussians on a square grid centred on 0: (-4, -2, 0, 2, 4)^2 by default."""
    ticks = (np.arange(side) - (side - 1) / 2) * spacing
    xs, ys = np.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture(np.stack([xs.ravel(), ys.ravel()], axis=1), float(std))


MIXTURES = {"ring8": ring, "grid25": grid}


def mode_metrics(samples, centres, std, threshold=3.0, min_count=None, min_share=0.008):
    """How many modes the samples cover, and how many samples are of high quality.

    samples (N, 2), centres (K, 2). A sample is high quality when its distance to the
    nearest centre is <= threshold * std; a mode is covered when at least `min_count`
    high-quality samples have it as their nearest centre. `min_count` defaults to
    max(1, ceil(min_share * N)): 20 for N = 2,500. Returns plain Python numbers:

        {"modes_covered": int, "n_modes": K, "high_quality": share in [0, 1],
         "counts": high-quality samples per mode (list of K ints), "min_count": int}
    """
    samples = np.asarray(samples, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != centres.shape[1] or len(samples) == 0:
        raise ValueError(f"mode_metrics: expected samples of shape (N, {centres.shape[1]}) "
                         f"with N >= 1, got {samples.shape}")
    if min_count is None:
        min_count = max(1, math.ceil(min_share * len(samples) - 1e-9))
    # (N, K) distances: N * K is at most a few hundred thousand here, one vectorised pass.
    distances = np.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    good = distances[np.arange(len(samples)), nearest] <= threshold * std
    counts = np.bincount(nearest[good], minlength=len(centres))
    return {"modes_covered": int((counts >= min_count).sum()), "n_modes": len(centres),
            "high_quality": float(good.mean()), "counts": counts.tolist(),
            "min_count": int(min_count)}
