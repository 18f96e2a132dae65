"""Adversarial: D steps touch only D; G is reached only through generator_loss."""
import numpy as np
import pytest

import needle as ndl
from gan import Adversarial
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating, Wasserstein
from gan.penalties import GradientPenalty


def setup_models(norm="batch", **kwargs):
    np.random.seed(0)
    G, D = Generator(latent_dim=8, width=4), Discriminator(width=4, norm=norm)
    adv = Adversarial(D, kwargs.pop("objective", NonSaturating()),
                      ndl.optim.Adam(D.parameters(), lr=1e-3), **kwargs)
    real = ndl.Tensor(np.random.uniform(-1, 1, (6, 1, 28, 28)).astype(np.float32),
                      requires_grad=False)
    return G, D, adv, real


def snapshot(module):
    return [p.numpy().copy() for p in module.parameters()]


def test_discriminator_step_updates_only_d():
    G, D, adv, real = setup_models()
    g_before, d_before = snapshot(G), snapshot(D)
    figures = adv.discriminator_step(real, G(ndl.init.randn(6, 8)))
    assert all(np.array_equal(a, b) for a, b in zip(g_before, snapshot(G)))
    assert all(p.grad is None for p in G.parameters())
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, snapshot(D)))
    assert set(figures) >= {"d_loss", "d_real", "d_fake", "d_grad_norm"}
    assert 0 < figures["d_real"] < 1 and figures["d_grad_norm"] > 0


def test_generator_loss_reaches_g_and_composes():
    G, D, adv, real = setup_models()
    fake = G(ndl.init.randn(6, 8))
    loss = adv.generator_loss(fake) + ndl.ops.mean(ndl.ops.abs(fake)) * 10
    loss.backward(create_graph=False)
    assert all(p.grad is not None for p in G.parameters())
    d_before = snapshot(D)
    assert all(np.array_equal(a, b) for a, b in zip(d_before, snapshot(D)))


def test_penalty_is_reported_and_weight_clip_applied():
    G, D, adv, real = setup_models(norm="none", objective=Wasserstein(),
                                   penalties=[GradientPenalty(10.0)], weight_clip=0.05)
    figures = adv.discriminator_step(real, G(ndl.init.randn(6, 8)))
    assert figures["penalty_GradientPenalty"] > 0
    assert max(np.abs(p.numpy()).max() for p in D.parameters()) <= 0.05


@pytest.mark.parametrize("n_critic", [0, -1, 1.5])
def test_n_critic_must_be_a_positive_integer(n_critic):
    np.random.seed(0)
    D = Discriminator(width=4)
    with pytest.raises(ValueError, match="n_critic"):
        Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters()), n_critic=n_critic)


def test_state_dict_round_trip_restores_d_and_optimizer():
    G, D, adv, real = setup_models()
    adv.discriminator_step(real, G(ndl.init.randn(6, 8)))
    state = adv.state_dict()
    assert any(k.startswith("optimizer.") for k in state)
    _, _, other, _ = setup_models()
    other.load_state_dict(state)
    fake = G(ndl.init.randn(6, 8))
    np.random.seed(5)
    a = adv.discriminator_step(real, fake)
    np.random.seed(5)
    b = other.discriminator_step(real, fake)
    assert a == b
