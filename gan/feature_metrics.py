"""Sample-quality metrics on feature vectors and class probabilities (NumPy, float64).

Each function takes real and generated ("fake") feature sets (N, d) -- in gan.metrics, the
MNIST classifier's 128-d penultimate features -- or the classifier's softmax probabilities:

  kid               Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2
                    with the cubic kernel, mean and std over random subsets.
  precision_recall  improved precision and recall (Kynkaanniemi et al. 2019), k = 3.
  density_coverage  density and coverage (Naeem et al. 2020), k = 5.
  inception_score   Inception Score (Salimans et al. 2016) of class probabilities.
  knn_radii         each point's distance to its k-th nearest other point of its set.

Random subsets and permutations come from their own RandomState(seed): these functions
never move NumPy's global RNG. Nearest-neighbour balls are closed (a point at exactly the
radius is inside), as in Kynkaanniemi et al.'s code; the prdc reference code of density and
coverage uses open balls, which differs only on exact ties. Pairwise distances are squared
Euclidean distances ||x||^2 + ||y||^2 - 2 x.y (BLAS matrix products, about twice as fast as
scipy's cdist on 128-d features here), clipped at 0 and formed in row blocks of at most
BLOCK_ENTRIES, so 10000 x 10000 comparisons never hold more than 64 MB.
"""
import numpy as np
from scipy.special import xlogy

__all__ = ["kid", "polynomial_kernel", "mmd2_unbiased", "precision_recall",
           "density_coverage", "inception_score", "knn_radii", "BLOCK_ENTRIES"]

BLOCK_ENTRIES = 1 << 23  # float64 entries of one block of distances: 64 MB


def _features(name, real, fake=None):
    """real (and fake) as float64 (N, d) arrays with the same d, or a ValueError naming
    the metric."""
    arrays = [np.asarray(real, dtype=np.float64)]
    if fake is not None:
        arrays.append(np.asarray(fake, dtype=np.float64))
    for label, array in zip(("real", "fake"), arrays):
        if array.ndim != 2:
            raise ValueError(f"{name}: expected {label} features (N, d), got shape "
                             f"{array.shape}")
    if fake is not None and arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(f"{name}: real features have {arrays[0].shape[1]} dims but fake "
                         f"features {arrays[1].shape[1]}")
    return arrays


def _need(name, k, **counts):
    """A ValueError naming the metric unless every set has at least k + 1 points."""
    for label, count in counts.items():
        if count < k + 1:
            raise ValueError(f"{name}: k = {k} nearest neighbours need at least {k + 1} "
                             f"{label} samples, got {count}")


def _squared_distance_blocks(a, b):
    """(start, block) over row blocks of a: block[i, j] = ||a[start + i] - b[j]||^2 >= 0."""
    b_norms = np.einsum("ij,ij->i", b, b)
    rows = max(1, BLOCK_ENTRIES // max(1, len(b)))
    for start in range(0, len(a), rows):
        part = a[start:start + rows]
        block = part @ b.T
        block *= -2
        block += b_norms
        block += np.einsum("ij,ij->i", part, part)[:, None]
        np.maximum(block, 0, out=block)
        yield start, block


def _kth_neighbour_squared(features, k):
    """Squared distance from each point to its k-th nearest other point of `features`."""
    radii = np.empty(len(features))
    for start, block in _squared_distance_blocks(features, features):
        rows = np.arange(len(block))
        block[rows, start + rows] = 0.0  # the point itself, exactly: the 0-th neighbour
        radii[start:start + len(block)] = np.partition(block, k, axis=1)[:, k]
    return radii


def knn_radii(features, k):
    """Distance from each of features (N, d) to its k-th nearest other point, (N,).

    A duplicate point counts as a neighbour at distance 0 (as in the reference codes, which
    take the (k+1)-th smallest distance with the point itself the first).
    """
    (features,) = _features("knn_radii", features)
    _need("knn_radii", k, feature=len(features))
    return np.sqrt(_kth_neighbour_squared(features, k))


def precision_recall(real, fake, k=3):
    """Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and
    Recall Metric for Assessing Generative Models").

    Each set's manifold is the union of closed balls around its points, each of radius the
    distance NND_k from the point to its k-th nearest neighbour in its own set:

        f(phi, Phi) = 1 if ||phi - phi'|| <= NND_k(phi') for some phi' in Phi, else 0
        precision   = 1/|fake| sum over phi_g in fake of f(phi_g, real)
        recall      = 1/|real| sum over phi_r in real of f(phi_r, fake)

    Precision is the share of generated samples that look real; recall the share of real
    samples the generator's manifold reaches. The paper uses k = 3 and equally many real
    and fake samples (both shares depend on the sizes). real (N, d), fake (M, d); both need
    at least k + 1 points. Returns (precision, recall) as floats in [0, 1].
    """
    real, fake = _features("precision_recall", real, fake)
    _need("precision_recall", k, real=len(real), fake=len(fake))
    real_radii = _kth_neighbour_squared(real, k)
    fake_radii = _kth_neighbour_squared(fake, k)
    fake_inside = np.zeros(len(fake), dtype=bool)
    real_inside = np.zeros(len(real), dtype=bool)
    for start, block in _squared_distance_blocks(real, fake):
        fake_inside |= (block <= real_radii[start:start + len(block), None]).any(axis=0)
        real_inside[start:start + len(block)] = (block <= fake_radii[None, :]).any(axis=1)
    return float(fake_inside.mean()), float(real_inside.mean())


def density_coverage(real, fake, k=5):
    """Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
    Generative Models").

    With real X_1..X_N, fake Y_1..Y_M and B(X_i, NND_k(X_i)) the closed ball around X_i of
    radius its distance to its k-th nearest other real point:

        density  = 1/(k M) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
        coverage = 1/N sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]

    Only the real balls are used, so outlying real points do not inflate either. Density
    counts how many real neighbourhoods hold each fake sample; its expectation is 1 when the
    fake samples come from the real distribution (it exceeds 1 when they crowd dense real
    regions). Coverage is the share of real neighbourhoods holding at least one fake sample;
    its expectation for identical distributions depends on M / N (the paper's Lemma 2), so
    use equally many real and fake samples, as the paper does. real (N, d) needs at least
    k + 1 points, fake (M, d) at least one. Returns (density, coverage).
    """
    real, fake = _features("density_coverage", real, fake)
    _need("density_coverage", k, real=len(real))
    if len(fake) == 0:
        raise ValueError("density_coverage: got no fake samples")
    radii = _kth_neighbour_squared(real, k)
    balls_holding = np.zeros(len(fake))
    covered = np.zeros(len(real), dtype=bool)
    for start, block in _squared_distance_blocks(real, fake):
        inside = block <= radii[start:start + len(block), None]
        balls_holding += inside.sum(axis=0)
        covered[start:start + len(block)] = inside.any(axis=1)
    return float(balls_holding.sum() / (k * len(fake))), float(covered.mean())


def polynomial_kernel(x, y):
    """KID's kernel matrix k(x, y) = (x.y / d + 1)^3 between the rows of x (m, d), y (n, d)."""
    kernel = x @ y.T
    kernel /= x.shape[1]
    kernel += 1
    return kernel * kernel * kernel


def mmd2_unbiased(x, y):
    """Unbiased estimate of the squared MMD between the sets x (m, d) and y (n, d) under
    polynomial_kernel (Gretton et al. 2012, "A Kernel Two-Sample Test"):

        MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(m n) sum_{i, j} k(x_i, y_j)

    The diagonal terms k(x_i, x_i) are left out, so the estimate is unbiased and can be
    negative when the two distributions are the same. m, n >= 2.
    """
    m, n = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * polynomial_kernel(x, y).sum() / (m * n))


def kid(real, fake, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs").

    KID is the unbiased estimate of MMD^2 (see mmd2_unbiased) between real and fake features
    under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, d the feature dimension.
    As in the reference codes (the paper's compute_scores.py: 50 subsets of 1000 from
    NumPy's global RNG; torch-fidelity's kid_features_to_metric: 100 subsets of 1000 from
    RandomState(2020)) it is averaged over `subsets` pairs of random subsets of
    m = min(subset_size, N, M) samples each; the defaults are torch-fidelity's, and the
    subsets are drawn without replacement from RandomState(seed) (per pair: the real
    indices, then the fake ones).
    Unlike FID it has an unbiased estimator, so its expectation does not depend on the
    sample count, and it is 0 on average -- single values may be negative -- when the fake
    samples come from the real distribution.

    real (N, d), fake (M, d), N, M >= 2. Returns (mean, std) over the subsets (the
    population std, ddof = 0, as torch-fidelity).
    """
    real, fake = _features("kid", real, fake)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"kid: the unbiased MMD needs at least 2 real and 2 fake samples, "
                         f"got {len(real)} real and {len(fake)} fake")
    if subsets < 1:
        raise ValueError(f"kid: subsets must be at least 1, got {subsets}")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        real_part = real[rng.choice(len(real), size, replace=False)]
        fake_part = fake[rng.choice(len(fake), size, replace=False)]
        values[i] = mmd2_unbiased(real_part, fake_part)
    return float(values.mean()), float(values.std())


def inception_score(probs, splits=10, seed=0):
    """Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs") of
    class probabilities p(y|x), probs (N, C), each row a softmax output:

        IS = exp(E_x KL(p(y|x) || p(y))),   p(y) = E_x p(y|x),

    computed on `splits` consecutive splits (the i-th holds rows [i N / splits,
    (i+1) N / splits)), each with its own marginal p(y), as the paper's code does; with
    `seed` (not None) the rows are first permuted by RandomState(seed), as torch-fidelity
    does, so that ordered inputs (e.g. cycling labels) do not bias the splits. 0 log 0 = 0.
    IS is 1 when every prediction is the same and at most C, reached by one-hot predictions
    spread evenly over the C classes. Returns (mean, std) over the splits (ddof = 0).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"inception_score: expected probabilities (N, C), got shape "
                         f"{probs.shape}")
    if splits < 1 or len(probs) < splits:
        raise ValueError(f"inception_score: {splits} splits need at least {max(splits, 1)} "
                         f"samples, got {len(probs)}")
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("inception_score: each row of probs must be probabilities summing "
                         "to 1 (softmax outputs, not logits)")
    if seed is not None:
        probs = probs[np.random.RandomState(seed).permutation(len(probs))]
    n = len(probs)
    scores = []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
