"""gan.feature_metrics: KID, precision/recall, density/coverage and the Inception Score on
hand-worked point sets, against explicit loops over pairs, at their edge values, and on bad
input."""
import math

import numpy as np
import pytest

from gan import feature_metrics
from gan.feature_metrics import (density_coverage, inception_score, kid, knn_radii,
                                 mmd2_unbiased, precision_recall)


def column(*values):
    """1-D points as an (N, 1) feature array."""
    return np.array(values, dtype=np.float64)[:, None]


# Real points 0, 1, 3, 6, 10 on a line; distances to the others, nearest first:
#   0: 1, 3, 6, 10     1: 1, 2, 5, 9     3: 2, 3, 3, 7     6: 3, 4, 5, 6     10: 4, 7, 9, 10
REAL = column(0, 1, 3, 6, 10)


@pytest.mark.parametrize("k, expected", [(1, [1, 1, 2, 3, 4]), (2, [3, 2, 3, 4, 7]),
                                         (3, [6, 5, 3, 5, 9])])
def test_knn_radii_on_a_line(k, expected):
    np.testing.assert_array_equal(knn_radii(REAL, k), expected)


def test_knn_radii_counts_a_duplicate_as_a_neighbour_at_distance_0():
    # 0, 0, 5: for each 0 the nearest other point is the other 0; for 5 it is a 0.
    np.testing.assert_array_equal(knn_radii(column(0, 0, 5), 1), [0, 0, 5])


# ---- precision and recall (Kynkaanniemi et al. 2019) ---------------------------------------
def test_precision_recall_by_hand_with_k_1():
    # Real balls (k = 1 radii 1, 1, 2, 3, 4): [-1, 1] [0, 2] [1, 5] [3, 9] [6, 14].
    # Fake 2, 4.5, 14, 17, 30; their k = 1 radii 2.5, 2.5, 3, 3, 13 give the fake balls
    # [-0.5, 4.5] [2, 7] [11, 17] [14, 20] [17, 43].
    fake = column(2, 4.5, 14, 17, 30)
    precision, recall = precision_recall(REAL, fake, k=1)
    # Precision: 2 (in [0, 2]), 4.5 (in [1, 5]) and 14 (on the edge of [6, 14]: balls are
    # closed) are in a real ball; 17 and 30 are not: 3 / 5.
    assert precision == 0.6
    # Recall: 0, 1, 3 in [-0.5, 4.5], 6 in [2, 7]; 10 is in no fake ball: 4 / 5.
    assert recall == 0.8


def test_precision_recall_by_hand_with_the_default_k_3():
    # Real balls (k = 3 radii 6, 5, 3, 5, 9): [-6, 6] [-4, 6] [0, 6] [1, 11] [1, 19].
    # Fake -10, -6, 19, 20: with 4 points the 3rd nearest is the farthest, so the fake
    # radii are 30, 26, 29, 30 and every fake ball holds all of [-6, 19].
    fake = column(-10, -6, 19, 20)
    precision, recall = precision_recall(REAL, fake)
    # -6 is on the edge of [-6, 6] and 19 on the edge of [1, 19]; -10 and 20 are out: 2 / 4.
    assert precision == 0.5
    assert recall == 1.0  # every real point lies in (every) fake ball


# ---- density and coverage (Naeem et al. 2020) ------------------------------------------------
def test_density_coverage_by_hand_with_k_1():
    # The same real balls [-1, 1] [0, 2] [1, 5] [3, 9] [6, 14] and fake 2, 4.5, 14, 17, 30.
    fake = column(2, 4.5, 14, 17, 30)
    density, coverage = density_coverage(REAL, fake, k=1)
    # Real balls holding each fake point: 2 -> [0, 2] and [1, 5]; 4.5 -> [1, 5] and [3, 9];
    # 14 -> [6, 14]; 17 and 30 -> none. 2 + 2 + 1 = 5 over k M = 1 * 5.
    assert density == 1.0
    # Balls holding a fake point: all but [-1, 1]: 4 of 5.
    assert coverage == 0.8


def test_density_coverage_by_hand_with_the_default_k_5():
    # Real 0..5: each point's 5th nearest is the farthest of the other five, so the radii
    # are 5, 4, 3, 3, 4, 5 and the balls [-5, 5] [-3, 5] [-1, 5] [0, 6] [0, 8] [0, 10].
    real = column(0, 1, 2, 3, 4, 5)
    fake = column(-4, 5.5, 9, 11)
    density, coverage = density_coverage(real, fake)
    # -4 -> [-5, 5]; 5.5 -> [0, 6] [0, 8] [0, 10]; 9 -> [0, 10]; 11 -> none.
    # 1 + 3 + 1 + 0 = 5 over k M = 5 * 4 = 20.
    assert density == 0.25
    # Covered: the balls of 0 (by -4), 3, 4 and 5 (by 5.5); not those of 1 and 2: 4 / 6.
    assert coverage == pytest.approx(4 / 6, abs=1e-15)


# ---- against explicit loops over pairs, with small distance blocks --------------------------
def loop_radii(points, k):
    return [sorted(math.dist(p, q) for j, q in enumerate(points) if j != i)[k - 1]
            for i, p in enumerate(points)]


def loop_prdc(real, fake, k):
    real_radii, fake_radii = loop_radii(real, k), loop_radii(fake, k)
    precision = np.mean([any(math.dist(y, x) <= r for x, r in zip(real, real_radii))
                         for y in fake])
    recall = np.mean([any(math.dist(x, y) <= r for y, r in zip(fake, fake_radii))
                      for x in real])
    density = sum(math.dist(y, x) <= r for y in fake for x, r in zip(real, real_radii)) \
        / (k * len(fake))
    coverage = np.mean([any(math.dist(x, y) <= r for y in fake)
                        for x, r in zip(real, real_radii)])
    return precision, recall, density, coverage


@pytest.mark.parametrize("block_entries", [50, feature_metrics.BLOCK_ENTRIES])
@pytest.mark.parametrize("k", [3, 5])
def test_prdc_match_loops_over_pairs(monkeypatch, block_entries, k):
    monkeypatch.setattr(feature_metrics, "BLOCK_ENTRIES", block_entries)  # 2-row blocks
    rng = np.random.RandomState(k)
    real, fake = rng.randn(37, 3), rng.randn(23, 3) * 1.3 + 0.4
    expected = loop_prdc(real.tolist(), fake.tolist(), k)
    np.testing.assert_allclose(precision_recall(real, fake, k) + density_coverage(real, fake, k),
                               expected, rtol=1e-12)
    np.testing.assert_allclose(knn_radii(real, k), loop_radii(real.tolist(), k), rtol=1e-7)


# ---- edge values -----------------------------------------------------------------------------
def test_identical_sets_score_one_and_far_sets_zero():
    features = np.random.RandomState(0).randn(200, 16)
    assert precision_recall(features, features.copy()) == (1.0, 1.0)
    assert density_coverage(features, features.copy())[1] == 1.0
    far = features + 1000.0
    assert precision_recall(features, far) == (0.0, 0.0)
    assert density_coverage(features, far) == (0.0, 0.0)


def test_density_and_coverage_of_one_distribution_match_their_expectations():
    # Naeem et al.: E[density] = 1; E[coverage] = 1 - prod_{j=1..k} (N - j) / (M + N - j),
    # 1 - 2^-5 = 0.969 for M = N and 0.598 for N = 5 M (k = 5).
    rng = np.random.RandomState(1)
    for n_real, n_fake in [(1000, 1000), (2500, 500)]:
        expected = 1 - np.prod([(n_real - j) / (n_fake + n_real - j) for j in range(1, 6)])
        runs = [density_coverage(rng.randn(n_real, 4), rng.randn(n_fake, 4))
                for _ in range(3)]
        density, coverage = np.mean(runs, axis=0)
        assert density == pytest.approx(1.0, abs=0.05)
        assert coverage == pytest.approx(expected, abs=0.02)


# ---- KID (Binkowski et al. 2018) ---------------------------------------------------------------
def test_kid_by_hand_on_two_points_each():
    # d = 1, k(a, b) = (a b + 1)^3. X = {0, 1}, Y = {1, 2}; each subset is the whole set.
    # Within X: k(0, 1) = 1, twice -> 2 / (2 * 1) = 1.
    # Within Y: k(1, 2) = 27, twice -> 54 / 2 = 27.
    # Across: k(0, 1) + k(0, 2) + k(1, 1) + k(1, 2) = 1 + 1 + 8 + 27 = 37 -> 2 * 37 / 4 = 18.5.
    # MMD^2_u = 1 + 27 - 18.5 = 9.5 on every subset.
    assert kid(column(0, 1), column(1, 2)) == (9.5, 0.0)


def test_kid_of_a_set_with_itself_is_negative():
    # X = Y = {-1, 1}: within each k(-1, 1) = 0; across the diagonal terms k(-1, -1) =
    # k(1, 1) = 8 stay: 0 + 0 - 2 * (8 + 0 + 0 + 8) / 4 = -8. The unbiased estimate drops
    # the diagonal only within a set, so it can be negative.
    assert kid(column(-1, 1), column(-1, 1)) == (-8.0, 0.0)


def loop_mmd2(x, y):
    d = len(x[0])

    def k(a, b):
        return (sum(p * q for p, q in zip(a, b)) / d + 1) ** 3
    m, n = len(x), len(y)
    within_x = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_y = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    across = sum(k(a, b) for a in x for b in y) / (m * n)
    return within_x + within_y - 2 * across


def test_mmd2_unbiased_matches_a_loop_over_pairs():
    rng = np.random.RandomState(2)
    x, y = rng.randn(7, 3), rng.randn(5, 3) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(loop_mmd2(x.tolist(), y.tolist()), rel=1e-12)


def test_kid_averages_loops_over_seeded_subsets_and_leaves_the_global_rng_alone():
    rng = np.random.RandomState(3)
    real, fake = rng.randn(9, 3), rng.randn(6, 3) * 0.8
    # Subsets of min(1000, 9, 6) = 6, drawn per pair real first, from RandomState(seed).
    draws = np.random.RandomState(4)
    values = []
    for _ in range(5):
        real_part = real[draws.choice(9, 6, replace=False)]
        fake_part = fake[draws.choice(6, 6, replace=False)]
        values.append(loop_mmd2(real_part.tolist(), fake_part.tolist()))
    np.random.seed(11)
    state = np.random.get_state()
    mean, std = kid(real, fake, subsets=5, seed=4)
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    assert np.random.get_state()[2] == state[2]
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert std == pytest.approx(np.std(values), rel=1e-9)
    assert kid(real, fake, subsets=5, seed=4) == (mean, std)
    assert kid(real, fake, subsets=5, seed=5)[0] != mean


def test_kid_of_one_distribution_is_near_zero_with_both_signs():
    rng = np.random.RandomState(5)
    shifted = kid(rng.randn(300, 8), rng.randn(300, 8) + 0.5, subsets=10)[0]
    same = [kid(rng.randn(300, 8), rng.randn(300, 8), subsets=1)[0] for _ in range(10)]
    assert min(same) < 0 < max(same)
    assert max(abs(value) for value in same) < 0.05 * shifted


# ---- Inception Score (Salimans et al. 2016) -------------------------------------------------
def test_inception_score_of_uniform_and_one_hot_predictions():
    assert inception_score(np.full((100, 10), 0.1)) == pytest.approx((1.0, 0.0), abs=1e-12)
    # One-hot, the classes cycling: every consecutive split of 10 holds each class once.
    one_hot = np.eye(10)[np.arange(100) % 10]
    assert inception_score(one_hot, seed=None) == pytest.approx((10.0, 0.0), abs=1e-12)
    assert inception_score(one_hot, splits=1) == pytest.approx((10.0, 0.0), abs=1e-12)
    # Always the same class: p(y|x) = p(y), KL 0.
    assert inception_score(np.eye(10)[np.zeros(50, int)]) == pytest.approx((1.0, 0.0))


def test_inception_score_by_hand():
    # p(y|x) = (1, 0) and (1/2, 1/2): p(y) = (3/4, 1/4).
    # KL_1 = log(1 / (3/4)) = log(4/3); KL_2 = 1/2 log(2/3) + 1/2 log(2) = 1/2 log(4/3).
    # IS = exp((KL_1 + KL_2) / 2) = exp(3/4 log(4/3)) = (4/3)^(3/4).
    score, std = inception_score(np.array([[1.0, 0.0], [0.5, 0.5]]), splits=1)
    assert score == pytest.approx((4 / 3) ** 0.75, rel=1e-14) and std == 0.0
    # Two splits in order: {(1, 0), (0, 1)} -> IS 2; {(1, 0), (1, 0)} -> IS 1. Mean 1.5,
    # population std 0.5.
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert inception_score(probs, splits=2, seed=None) == pytest.approx((1.5, 0.5))


def test_inception_score_shuffles_with_its_own_seed():
    probs = np.eye(10)[np.arange(100) // 10]  # sorted: each ordered split holds one class
    assert inception_score(probs, seed=None) == pytest.approx((1.0, 0.0))
    np.random.seed(3)
    state = np.random.get_state()
    shuffled = inception_score(probs, seed=0)
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    assert 1.0 < shuffled[0] < 10.0 and inception_score(probs, seed=0) == shuffled


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: precision_recall(np.zeros((3, 2)), np.ones((10, 2))),
     "precision_recall: k = 3 nearest neighbours need at least 4 real samples, got 3"),
    (lambda: precision_recall(np.zeros((10, 2)), np.ones((4, 2)), k=4),
     "precision_recall: k = 4 nearest neighbours need at least 5 fake samples, got 4"),
    (lambda: density_coverage(np.zeros((5, 2)), np.ones((10, 2))),
     "density_coverage: k = 5 nearest neighbours need at least 6 real samples, got 5"),
    (lambda: density_coverage(np.zeros((6, 2)), np.ones((0, 2))),
     "density_coverage: got no fake samples"),
    (lambda: knn_radii(np.zeros((2, 2)), 2),
     "knn_radii: k = 2 nearest neighbours need at least 3 feature samples, got 2"),
    (lambda: precision_recall(np.zeros((10, 4)), np.ones((10, 3))),
     "precision_recall: real features have 4 dims but fake features 3"),
    (lambda: density_coverage(np.zeros((10, 4)), np.ones((10, 3))),
     "density_coverage: real features have 4 dims but fake features 3"),
    (lambda: kid(np.zeros((10, 128)), np.ones((10, 64))),
     "kid: real features have 128 dims but fake features 64"),
    (lambda: kid(np.zeros(10), np.ones((10, 1))),
     r"kid: expected real features \(N, d\), got shape \(10,\)"),
    (lambda: kid(np.zeros((1, 2)), np.ones((10, 2))),
     "kid: the unbiased MMD needs at least 2 real and 2 fake samples, got 1 real and 10 fake"),
    (lambda: inception_score(np.full((9, 10), 0.1)),
     "inception_score: 10 splits need at least 10 samples, got 9"),
    (lambda: inception_score(np.zeros((20, 10))),
     "inception_score: each row of probs must be probabilities summing to 1"),
    (lambda: inception_score(np.full(10, 0.1)),
     r"inception_score: expected probabilities \(N, C\), got shape \(10,\)"),
])
def test_bad_input_is_a_one_line_error_naming_the_metric(call, message):
    with pytest.raises(ValueError, match="^" + message) as error:
        call()
    assert "\n" not in str(error.value)
