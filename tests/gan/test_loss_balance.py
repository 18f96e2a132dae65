"""gan.loss_balance.AdaptiveWeight: the weight against the two gradient norms worked out by
hand in NumPy, its clamp, its warm-up, and the `balance` option of
gan.Adversarial.generator_loss (the weight is a constant to the backward pass)."""
import numpy as np
import pytest

import needle as ndl
from gan import Adversarial
from gan.loss_balance import AdaptiveWeight
from gan.objectives import NonSaturating
from needle import nn, ops


def setup(seed=0, n=5, k=4, m=3):
    """A last layer y = x @ W (W the Parameter), an L1 reconstruction and a non-saturating
    adversarial loss through a linear critic v: all the hand derivation needs."""
    rng = np.random.RandomState(seed)
    x, W0 = rng.randn(n, k), rng.randn(k, m)
    t, v = rng.randn(n, m), rng.randn(m, 1)
    W = nn.Parameter(ndl.Tensor(W0.astype(np.float32)))
    y = ndl.Tensor(x.astype(np.float32), requires_grad=False) @ W
    rec = ops.mean(ops.abs(y - ndl.Tensor(t.astype(np.float32), requires_grad=False))) * 100
    scores = y @ ndl.Tensor(v.astype(np.float32), requires_grad=False)
    adv = ops.mean(ops.softplus(-scores))  # -log sigmoid(D(G)): NonSaturating's G loss
    return dict(x=x, W=W0, t=t, v=v), W, rec, adv


def hand_norms(a):
    """||d rec/dW|| and ||d adv/dW|| from the chain rule: dL/dW = x^T dL/dy."""
    x, W, t, v = a["x"], a["W"], a["t"], a["v"]
    n, m = len(x), W.shape[1]
    y = x @ W
    g_rec = x.T @ (100 * np.sign(y - t) / (n * m))
    s = (y @ v)[:, 0]
    d_scores = -1 / (1 + np.exp(s)) / n  # d/ds softplus(-s) = -sigmoid(-s)
    g_adv = x.T @ (d_scores[:, None] * v[:, 0][None, :])
    return np.linalg.norm(g_rec), np.linalg.norm(g_adv)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_weight_is_the_ratio_of_the_hand_computed_gradient_norms(seed):
    arrays, W, rec, adv = setup(seed)
    rec_norm, adv_norm = hand_norms(arrays)
    weighting = AdaptiveWeight(base_weight=0.8)
    got = weighting.weight(rec, adv, W)
    assert isinstance(got, float) and weighting.last_weight == got
    assert got == pytest.approx(0.8 * rec_norm / (adv_norm + 1e-4), rel=1e-5)


def test_the_ratio_is_clamped_at_1e4_and_needs_no_graph_of_its_own():
    arrays, W, rec, _ = setup()
    flat = ops.summation(ops.reshape(W, (12,))) * 0.0  # a term with zero gradient
    rec_norm, _ = hand_norms(arrays)
    assert rec_norm / 1e-4 > 1e4  # unclamped it would exceed the cap
    assert AdaptiveWeight(base_weight=2.0).weight(rec, flat, W) == 2e4
    assert W.grad is None  # the norms never touch .grad


def test_warm_up_counts_zero_based_steps():
    weighting = AdaptiveWeight(warmup_steps=3)
    assert [weighting.warming_up(step) for step in range(5)] == [True, True, True, False,
                                                                 False]
    assert not AdaptiveWeight().warming_up(0)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="AdaptiveWeight: base_weight must be"):
        AdaptiveWeight(base_weight=-1)
    with pytest.raises(ValueError, match="AdaptiveWeight: warmup_steps must be"):
        AdaptiveWeight(warmup_steps=1.5)


class Linear(nn.Module):
    """A critic D(y, x) = y @ v (the condition unused): scores (N, 1)."""

    def __init__(self, v):
        super().__init__()
        self.v = nn.Parameter(ndl.Tensor(v.astype(np.float32)))

    def forward(self, y, x=None):
        return y @ self.v


def test_generator_loss_with_balance_scales_the_term_by_a_detached_weight():
    arrays, W, rec, _ = setup(3)
    x = ndl.Tensor(arrays["x"].astype(np.float32), requires_grad=False)
    D = Linear(arrays["v"])
    adversarial = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters()))
    fake = x @ W
    weighting = AdaptiveWeight(base_weight=0.5)
    plain = adversarial.generator_loss(fake, x)
    balanced = adversarial.generator_loss(fake, x, balance=weighting.balance(rec, W))
    rec_norm, adv_norm = hand_norms(arrays)
    weight = 0.5 * rec_norm / (adv_norm + 1e-4)
    assert weighting.last_weight == pytest.approx(weight, rel=1e-5)
    assert float(balanced.numpy()) == pytest.approx(weight * float(plain.numpy()), rel=1e-5)
    # the weight is a constant: d balanced / dW = weight * d adv / dW, no term from d weight
    (grad_balanced,) = ndl.grad(balanced, [W])
    (grad_plain,) = ndl.grad(plain, [W])
    np.testing.assert_allclose(grad_balanced.numpy(), weighting.last_weight * grad_plain.numpy(),
                               rtol=1e-5, atol=1e-7)
