"""2-D Gaussian mixtures and their mode metrics, on constructed samples."""
import numpy as np
import pytest

from gan.mixtures import MIXTURES, grid, mode_metrics, ring


def test_ring_centres():
    mixture = ring(n_modes=8, radius=2.0, std=0.02)
    assert mixture.centres.shape == (8, 2) and mixture.std == 0.02
    np.testing.assert_allclose(np.linalg.norm(mixture.centres, axis=1), 2.0)
    np.testing.assert_allclose(mixture.centres[0], [2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(mixture.centres[2], [0.0, 2.0], atol=1e-12)


def test_grid_centres():
    mixture = grid(side=5, spacing=2.0)
    assert mixture.centres.shape == (25, 2)
    assert sorted(set(mixture.centres[:, 0])) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(c) for c in mixture.centres}) == 25
    assert set(MIXTURES) == {"ring8", "grid25"}


@pytest.mark.parametrize("rng", [np.random.RandomState(0), np.random.default_rng(0)],
                         ids=["RandomState", "Generator"])
def test_sample_is_the_mixture(rng):
    mixture = ring()
    points = mixture.sample(4000, rng)
    assert points.shape == (4000, 2) and points.dtype == np.float32
    nearest = np.linalg.norm(points[:, None] - mixture.centres[None], axis=2).argmin(axis=1)
    shares = np.bincount(nearest, minlength=8) / 4000
    np.testing.assert_allclose(shares, 1 / 8, atol=0.03)
    offsets = points - mixture.centres[nearest]
    np.testing.assert_allclose(offsets.std(axis=0), 0.02, rtol=0.1)


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
    assert scores["counts"] == [100] * 25 and scores["min_count"] == 20


def test_all_samples_on_one_centre_cover_one_mode():
    mixture = ring()
    samples = np.tile(mixture.centres[3], (2500, 1))
    scores = mixture.mode_metrics(samples)
    assert scores["modes_covered"] == 1
    assert scores["high_quality"] == 1.0
    assert scores["counts"][3] == 2500 and sum(scores["counts"]) == 2500


def test_high_quality_share_and_threshold():
    mixture = ring(std=0.1)
    centre = mixture.centres[0]
    # 3 std = 0.3: offsets 0.29 count, 0.31 do not; far points never do.
    samples = np.array([centre + [0.29, 0], centre + [0, -0.31], centre, [0.0, 0.0]])
    scores = mode_metrics(samples, mixture.centres, mixture.std, min_count=1)
    assert scores["high_quality"] == 0.5
    assert scores["modes_covered"] == 1


def test_a_mode_needs_min_count_high_quality_samples():
    mixture = ring()
    samples = np.concatenate([np.tile(mixture.centres[0], (2481, 1)),
                              np.tile(mixture.centres[1], (19, 1))])  # 19 < 20 of 2,500
    assert mode_metrics(samples, mixture.centres, mixture.std)["modes_covered"] == 1
    assert mode_metrics(samples, mixture.centres, mixture.std, min_count=19)[
        "modes_covered"] == 2


def test_true_samples_are_about_99_percent_high_quality():
    mixture = ring()
    scores = mixture.mode_metrics(mixture.sample(20000, np.random.RandomState(1)))
    assert scores["modes_covered"] == 8
    assert abs(scores["high_quality"] - (1 - np.exp(-4.5))) < 0.005


def test_bad_sample_shape_is_named():
    with pytest.raises(ValueError, match=r"mode_metrics: expected samples of shape \(N, 2\)"):
        mode_metrics(np.zeros((5, 3)), ring().centres, 0.02)
