"""2-D Gaussian mixtures for mode-collapse checks, on the published protocol, and its metrics.

The two targets of VEEGAN (Srivastava et al. 2017, sec. 5.1) and PacGAN (Lin et al. 2018,
sec. 4 and appendix; the geometry below is that of the PacGAN authors' code,
fjxmlzn/PacGAN synthetic_data_experiments/2DRing_GAN&PacGAN and 2DGrid_GAN&PacGAN config.py,
which GDPP's code, M-Elfeki/GDPP gdppgan_Synthetic.py, shares), each a uniform mixture of
isotropic 2-D Gaussians:

    ring():  8 modes at (cos(2 pi i / 8), sin(2 pi i / 8)), i = 0..7: radius 1, std 0.01
             (variance 1e-4 per coordinate)
    grid(): 25 modes at (-4 + 2i, -4 + 2j), i, j = 0..4: spacing 2, std 0.05
             (variance 0.0025 per coordinate)

    ring8 = ring()
    real = ring8.sample(256, np.random.RandomState(0))       # (256, 2) float32
    mode_metrics(fake, ring8.centres, ring8.std)    # {"modes_covered": 8, ...}

The evaluation rule (VEEGAN sec. 5.1, PacGAN sec. 4): draw EVAL_SAMPLES = 2,500 samples from
the trained generator; a sample is *high quality* when it lies within 3 standard deviations
of its nearest mode centre; a mode is *covered* ("captured") when it is the nearest centre of
at least one high-quality sample. For an exact sample of the mixture, 98.9% of samples are
high quality (a 2-D Gaussian's radius is Rayleigh: P(r <= 3 std) = 1 - exp(-4.5)).
"""
import dataclasses

import numpy as np

__all__ = ["GaussianMixture", "ring", "grid", "mode_metrics", "MIXTURES", "EVAL_SAMPLES"]

#: samples drawn from a trained generator for mode_metrics, in VEEGAN's and PacGAN's protocol
EVAL_SAMPLES = 2500


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


def ring(n_modes=8, radius=1.0, std=0.01):
    """`n_modes` Gaussians evenly spaced on a circle of `radius`, the first at (radius, 0).

    The defaults are the published 2-D ring (see the module docstring)."""
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(centres, float(std))


def grid(side=5, spacing=2.0, std=0.05):
    """side x side Gaussians on a square grid centred on 0: (-4, -2, 0, 2, 4)^2 by default.

    The defaults are the published 2-D grid (see the module docstring)."""
    ticks = (np.arange(side) - (side - 1) / 2) * spacing
    xs, ys = np.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture(np.stack([xs.ravel(), ys.ravel()], axis=1), float(std))


MIXTURES = {"ring8": ring, "grid25": grid}


def mode_metrics(samples, centres, std, threshold=3.0, min_count=1):
    """How many modes the samples cover, and how many samples are of high quality.

    samples (N, 2), centres (K, 2). A sample is high quality when its distance to the
    nearest centre is <= threshold * std; a mode is covered when at least `min_count`
    high-quality samples have it as their nearest centre (the protocol: 1, see the module
    docstring). Returns plain Python numbers:

        {"modes_covered": int, "n_modes": K, "high_quality": share in [0, 1],
         "counts": high-quality samples per mode (list of K ints)}
    """
    samples = np.asarray(samples, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != centres.shape[1] or len(samples) == 0:
        raise ValueError(f"mode_metrics: expected samples of shape (N, {centres.shape[1]}) "
                         f"with N >= 1, got {samples.shape}")
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 1:
        raise ValueError(f"mode_metrics: min_count must be an integer >= 1, got {min_count!r}")
    # (N, K) distances: N * K is at most a few hundred thousand here, one vectorised pass.
    distances = np.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    good = distances[np.arange(len(samples)), nearest] <= threshold * std
    counts = np.bincount(nearest[good], minlength=len(centres))
    return {"modes_covered": int((counts >= min_count).sum()), "n_modes": len(centres),
            "high_quality": float(good.mean()), "counts": counts.tolist()}
