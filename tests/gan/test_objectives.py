"""Each objective's D and G losses and their gradients against NumPy formulas written here."""
import numpy as np
import pytest

import needle as ndl
from gan.objectives import (OBJECTIVES, Hinge, LeastSquares, Minimax, NonSaturating,
                            RelativisticPairing, Wasserstein, get_objective)


def softplus(x):
    return np.logaddexp(0, x)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# objective, D loss(r, f), dD/dr, dD/df, G loss(f), dG/df  (means over N)
CASES = [
    (Minimax(),
     lambda r, f: softplus(-r).mean() + softplus(f).mean(),
     lambda r, f: -sigmoid(-r) / r.size, lambda r, f: sigmoid(f) / f.size,
     lambda f: -softplus(f).mean(), lambda f: -sigmoid(f) / f.size),
    (NonSaturating(),
     lambda r, f: softplus(-r).mean() + softplus(f).mean(),
     lambda r, f: -sigmoid(-r) / r.size, lambda r, f: sigmoid(f) / f.size,
     lambda f: softplus(-f).mean(), lambda f: -sigmoid(-f) / f.size),
    (Wasserstein(),
     lambda r, f: f.mean() - r.mean(),
     lambda r, f: -np.ones_like(r) / r.size, lambda r, f: np.ones_like(f) / f.size,
     lambda f: -f.mean(), lambda f: -np.ones_like(f) / f.size),
    (Hinge(),
     lambda r, f: np.maximum(1 - r, 0).mean() + np.maximum(1 + f, 0).mean(),
     lambda r, f: -(r < 1.0).astype(float) / r.size, lambda r, f: (f > -1) / f.size,
     lambda f: -f.mean(), lambda f: -np.ones_like(f) / f.size),
    (LeastSquares(),
     lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(),
     lambda r, f: (r - 1) / r.size, lambda r, f: f / f.size,
     lambda f: 0.5 * ((f - 1) ** 2).mean(), lambda f: (f - 1) / f.size),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: type(c[0]).__name__
                         if not callable(c) else None)
@pytest.mark.parametrize("shape", [(6,), (3, 1, 2, 2)])
def test_objective_values_and_gradients(case, shape):
    objective, d_loss, d_real, d_fake, g_loss, g_fake = case
    rng = np.random.default_rng(0)
    # keep hinge logits away from its kinks at +-1
    r = rng.uniform(-3, 3, shape)
    r[np.abs(np.abs(r) - 1) < 0.1] += 0.3
    f = rng.uniform(-3, 3, shape)
    f[np.abs(np.abs(f) - 1) < 0.1] += 0.3
    real, fake = ndl.Tensor(r, dtype="float64"), ndl.Tensor(f, dtype="float64")
    loss = objective.discriminator_loss(real, fake)
    np.testing.assert_allclose(loss.numpy(), d_loss(r, f), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(real.grad.numpy(), d_real(r, f), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fake.grad.numpy(), d_fake(r, f), rtol=1e-12, atol=1e-15)
    fake = ndl.Tensor(f, dtype="float64")
    loss = objective.generator_loss(fake)
    np.testing.assert_allclose(loss.numpy(), g_loss(f), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(fake.grad.numpy(), g_fake(f), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objectives_stay_finite_on_confident_logits(name):
    """On logits, never log(sigmoid): a confident D (|logit| = 1000) gives finite losses."""
    objective = get_objective(name)
    real, fake = ndl.Tensor(np.array([1000.0, -1000.0])), ndl.Tensor(np.array([-1000.0, 1000.0]))
    loss = (objective.discriminator_loss(real, fake)
            + objective.generator_loss(fake, real=real))
    loss.backward()
    assert np.isfinite(loss.numpy())
    assert np.isfinite(real.grad.numpy()).all() and np.isfinite(fake.grad.numpy()).all()


def test_report_is_a_probability_for_logit_objectives():
    scores = ndl.Tensor(np.array([0.0, 0.0]))
    assert NonSaturating().report(scores) == pytest.approx(0.5)
    assert Wasserstein().report(ndl.Tensor(np.array([2.0, 4.0]))) == pytest.approx(3.0)


def test_unknown_objective_is_named():
    with pytest.raises(ValueError, match="unknown objective 'wgan'.*non-saturating"):
        get_objective("wgan")


@pytest.mark.parametrize("objective", [Minimax, NonSaturating])
def test_one_sided_label_smoothing_moves_only_the_real_target(objective):
    """D's real term is the cross-entropy against target 1 - s; generated ones keep 0."""
    s = 0.1
    rng = np.random.default_rng(1)
    r, f = rng.normal(size=5) * 3, rng.normal(size=5) * 3
    real, fake = ndl.Tensor(r, dtype="float64"), ndl.Tensor(f, dtype="float64")
    loss = objective(label_smoothing=s).discriminator_loss(real, fake)
    expected = (-(1 - s) * np.log(sigmoid(r)) - s * np.log(1 - sigmoid(r))).mean() \
        + softplus(f).mean()
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(real.grad.numpy(), (sigmoid(r) - (1 - s)) / r.size, rtol=1e-10)
    np.testing.assert_allclose(fake.grad.numpy(), sigmoid(f) / f.size, rtol=1e-10)


def test_label_smoothing_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="label smoothing applies to"):
        get_objective("wasserstein", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\)"):
        NonSaturating(label_smoothing=0.7)
    assert get_objective("non-saturating", 0.1).label_smoothing == 0.1


def test_relativistic_pairing_losses_and_gradients():
    """RpGAN: D E[softplus(f - r)], G E[softplus(r - f)], pair by pair."""
    rng = np.random.default_rng(2)
    r, f = rng.normal(size=6) * 2, rng.normal(size=6) * 2
    real, fake = ndl.Tensor(r, dtype="float64"), ndl.Tensor(f, dtype="float64")
    objective = RelativisticPairing()
    loss = objective.discriminator_loss(real, fake)
    np.testing.assert_allclose(loss.numpy(), softplus(f - r).mean(), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(real.grad.numpy(), -sigmoid(f - r) / 6, rtol=1e-10)
    np.testing.assert_allclose(fake.grad.numpy(), sigmoid(f - r) / 6, rtol=1e-10)
    real, fake = ndl.Tensor(r, dtype="float64"), ndl.Tensor(f, dtype="float64")
    loss = objective.generator_loss(fake, real=real)
    np.testing.assert_allclose(loss.numpy(), softplus(r - f).mean(), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(fake.grad.numpy(), -sigmoid(r - f) / 6, rtol=1e-10)


def test_relativistic_pairing_names_what_it_needs():
    scores = ndl.Tensor(np.zeros(4))
    with pytest.raises(ValueError, match="needs D's scores on a real batch"):
        RelativisticPairing().generator_loss(scores)
    with pytest.raises(ValueError, match="pair one to one"):
        RelativisticPairing().discriminator_loss(scores, ndl.Tensor(np.zeros(3)))
