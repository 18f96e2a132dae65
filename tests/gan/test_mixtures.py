"""2-D Gaussian mixtures on the published protocol, and their mode metrics on constructed
samples. The published numbers: PacGAN's code (fjxmlzn/PacGAN, synthetic_data_experiments
2DRing/2DGrid config.py): ring means (cos(2 pi i / 8), sin(2 pi i / 8)) with variance 1e-4,
grid means (i, j) for i, j in range(-4, 5, 2) with variance 0.05 ** 2; 2,500 samples scored."""
import itertools
import math

import numpy as np
import pytest

from gan.mixtures import EVAL_SAMPLES, MIXTURES, grid, mode_metrics, ring


def test_ring_is_the_published_ring():
    mixture = ring()
    published = [(math.cos(i * math.pi * 2 / 8), math.sin(i * math.pi * 2 / 8))
                 for i in range(8)]
    np.testing.assert_allclose(mixture.centres, published, atol=1e-12)
    assert mixture.std ** 2 == pytest.approx(1e-4) and mixture.n_modes == 8


def test_grid_is_the_published_grid():
    mixture = grid()
    published = {(float(i), float(j)) for i, j in itertools.product(range(-4, 5, 2),
                                                                     range(-4, 5, 2))}
    assert {tuple(c) for c in mixture.centres.tolist()} == published
    assert mixture.centres.shape == (25, 2)
    assert mixture.std ** 2 == pytest.approx(0.0025)
    assert set(MIXTURES) == {"ring8", "grid25"} and EVAL_SAMPLES == 2500


def test_other_geometries():
    mixture = ring(n_modes=4, radius=2.0, std=0.1)
    np.testing.assert_allclose(mixture.centres, [[2, 0], [0, 2], [-2, 0], [0, -2]],
                               atol=1e-12)
    assert sorted(set(grid(side=3, spacing=1.0).centres[:, 0])) == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize("rng", [np.random.RandomState(0), np.random.default_rng(0)],
                         ids=["RandomState", "Generator"])
@pytest.mark.parametrize("make", [ring, grid], ids=["ring", "grid"])
def test_sample_is_the_mixture(rng, make):
    mixture = make()
    points = mixture.sample(20000, rng)
    assert points.shape == (20000, 2) and points.dtype == np.float32
    nearest = np.linalg.norm(points[:, None] - mixture.centres[None], axis=2).argmin(axis=1)
    shares = np.bincount(nearest, minlength=mixture.n_modes) / len(points)
    np.testing.assert_allclose(shares, 1 / mixture.n_modes, atol=0.012)
    offsets = points - mixture.centres[nearest]
    np.testing.assert_allclose(offsets.std(axis=0), mixture.std, rtol=0.05)


def test_sampler_is_reproducible():
    mixture = grid()
    a = mixture.sample(10, np.random.RandomState(3))
    b = mixture.sample(10, np.random.RandomState(3))
    np.testing.assert_array_equal(a, b)


def test_exact_centres_cover_every_mode():
    mixture = grid()
    samples = np.repeat(mixture.centres, 100, axis=0)  # 2,500 samples, 100 on each centre
    scores = mode_metrics(samples, mixture.centres, mixture.std)
    assert scores["modes_covered"] == 25 and scores["n_modes"] == 25
    assert scores["high_quality"] == 1.0
    assert scores["counts"] == [100] * 25


def test_all_samples_on_one_centre_cover_one_mode():
    mixture = ring()
    samples = np.tile(mixture.centres[3], (2500, 1))
    scores = mixture.mode_metrics(samples)
    assert scores["modes_covered"] == 1
    assert scores["high_quality"] == 1.0
    assert scores["counts"][3] == 2500 and sum(scores["counts"]) == 2500


def test_high_quality_is_within_three_std_of_the_nearest_centre():
    mixture = ring()  # std 0.01: 3 std = 0.03
    centre = mixture.centres[0]
    samples = np.array([centre + [0.029, 0], centre + [0, -0.031], centre, [0.0, 0.0]])
    scores = mixture.mode_metrics(samples)
    assert scores["high_quality"] == 0.5
    assert scores["counts"] == [2, 0, 0, 0, 0, 0, 0, 0]


def test_one_high_quality_sample_covers_a_mode():
    """The protocol's rule: a mode is captured when it is the nearest centre of at least one
    high-quality sample; samples near a mode but outside 3 std do not capture it."""
    mixture = grid()  # 3 std = 0.15
    samples = np.concatenate([np.tile(mixture.centres[0], (2497, 1)),
                              [mixture.centres[7] + [0.1, 0.1]],   # 0.141 away: counts
                              [mixture.centres[9] + [0.16, 0.0]],  # 0.16 away: does not
                              [mixture.centres[9] - [0.0, 0.5]]])
    scores = mixture.mode_metrics(samples)
    assert scores["modes_covered"] == 2
    assert scores["counts"][7] == 1 and scores["counts"][9] == 0
    assert scores["high_quality"] == pytest.approx(2498 / 2500)
    assert mode_metrics(samples, mixture.centres, mixture.std, min_count=2)[
        "modes_covered"] == 1


def test_true_samples_are_about_99_percent_high_quality():
    for mixture in (ring(), grid()):
        scores = mixture.mode_metrics(mixture.sample(20000, np.random.RandomState(1)))
        assert scores["modes_covered"] == mixture.n_modes
        assert abs(scores["high_quality"] - (1 - np.exp(-4.5))) < 0.005


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"mode_metrics: expected samples of shape \(N, 2\)"):
        mode_metrics(np.zeros((5, 3)), ring().centres, 0.01)
    with pytest.raises(ValueError, match="mode_metrics: min_count must be an integer >= 1"):
        mode_metrics(np.zeros((5, 2)), ring().centres, 0.01, min_count=0)
