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


def test_generator_step_leaves_d_unchanged():
    """generator_loss, its backward and G's optimizer step move G and leave D's weights."""
    G, D, adv, real = setup_models()
    g_opt = ndl.optim.Adam(G.parameters(), lr=1e-2)
    adv.discriminator_step(real, G(ndl.init.randn(6, 8)))  # D's optimizer now has state
    d_before, g_before = snapshot(D), snapshot(G)
    loss = adv.generator_loss(G(ndl.init.randn(6, 8)))
    g_opt.reset_grad()
    loss.backward(create_graph=False)
    assert all(p.grad is not None for p in D.parameters())  # G's loss reached D too
    g_opt.step()
    assert all(not np.array_equal(a, b) for a, b in zip(g_before, snapshot(G)))
    assert all(np.array_equal(a, b) for a, b in zip(d_before, snapshot(D)))


def test_generator_loss_composes_with_l1_as_a_sum_of_gradients():
    """(generator_loss + 10 * L1).backward() gives G the sum of the two gradients apart."""
    G, D, adv, real = setup_models()
    target = ndl.Tensor(np.random.RandomState(3).uniform(-1, 1, (6, 1, 28, 28))
                        .astype(np.float32), requires_grad=False)
    fake = G(ndl.init.randn(6, 8))
    adversarial, l1 = adv.generator_loss(fake), ndl.ops.mean(ndl.ops.abs(fake - target))
    params = G.parameters()
    g_adv = [g.numpy() for g in ndl.grad([adversarial], params)]
    g_l1 = [g.numpy() for g in ndl.grad([l1], params)]
    (adversarial + l1 * 10).backward(create_graph=False)
    for p, a, b in zip(params, g_adv, g_l1):
        expected = a + 10 * b
        # both terms matter: the sum is far from either one alone
        for part in (a, 10 * b):
            assert np.abs(expected - part).max() > 1e-3 * np.abs(expected).max()
        np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-4,
                                   atol=1e-6 * np.abs(expected).max())


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


# ---- graph hygiene: break the D/G boundary on purpose --------------------------------
from gan import GraphHygieneError  # noqa: E402
from needle import ops  # noqa: E402


def noise(n=6):
    return ndl.init.randn(n, 8)


class ForgetsToDetach(Adversarial):
    """A custom D loss that uses the generated batch as is: D's backward reaches G."""

    def discriminator_loss(self, real, fake, cond=None):
        real_scores, fake_scores = self.score(real, cond), self.score(fake, cond)
        return (self.objective.discriminator_loss(real_scores, fake_scores), real_scores,
                fake_scores, {})


def test_d_step_that_reaches_g_raises_before_updating_d():
    G, D, _, real = setup_models()
    adv = ForgetsToDetach(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3),
                          generator=G)
    d_before = snapshot(D)
    with pytest.raises(GraphHygieneError) as error:
        adv.discriminator_step(real, G(noise()))
    message = str(error.value)
    assert "D step put gradients on" in message and "Generator" in message
    assert "net.modules.0.weight" in message and "detach" in message
    assert all(np.array_equal(a, b) for a, b in zip(d_before, snapshot(D)))  # D not stepped


def test_a_penalty_that_closes_over_a_live_fake_is_caught():
    G, D, _, real = setup_models()
    live_fake = G(noise())

    def leaky_penalty(score, real, fake):  # uses the loop's fake, not the detached one
        return ops.mean(score(live_fake) ** 2) * 0.1

    adv = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3),
                      penalties=[leaky_penalty], generator=G)
    with pytest.raises(GraphHygieneError, match="D step put gradients"):
        adv.discriminator_step(real, live_fake)


def test_g_step_that_steps_d_is_caught_at_the_next_d_step():
    """A custom loop whose G step also calls D's optimizer."""
    G, D, adv, real = setup_models()
    adv.watch(G)
    g_opt = ndl.optim.Adam(G.parameters(), lr=1e-3)
    adv.discriminator_step(real, G(noise()))
    g_loss = adv.generator_loss(G(noise()))
    g_opt.reset_grad()
    g_loss.backward()
    g_opt.step()
    adv.optimizer.step()  # the mistake: D moves on G's loss
    with pytest.raises(GraphHygieneError) as error:
        adv.discriminator_step(real, G(noise()))
    message = str(error.value)
    assert "G step changed D's weights" in message and "Discriminator" in message
    assert "features.modules.0.weight" in message


def test_one_optimizer_over_g_and_d_is_caught_by_the_trainer(tmp_path):
    from gan import Trainer, TrainerConfig

    G, D, adv, _ = setup_models()
    both = ndl.optim.Adam(G.parameters() + D.parameters(), lr=1e-3)
    images = np.random.RandomState(1).uniform(-1, 1, (16, 1, 28, 28)).astype(np.float32)
    trainer = Trainer(G, adv, both, images,
                      TrainerConfig(out_dir=str(tmp_path), batch_size=8, latent_dim=8,
                                    num_samples=4, progress=False, health=False))
    with pytest.raises(GraphHygieneError, match="G step changed D's weights"):
        trainer.train()


def test_checks_run_once_per_run_and_every_step_in_debug_mode():
    G, D, _, real = setup_models()
    calls = {"count": 0}

    class Counting(Adversarial):
        def _check_d_step_leaks(self, before):
            calls["count"] += 1
            return super()._check_d_step_leaks(before)

    for debug, expected in ((False, 1), (True, 3)):
        calls["count"] = 0
        adv = Counting(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3),
                       generator=G, debug=debug)
        for _ in range(3):
            adv.discriminator_step(real, G(noise()))
            adv.generator_loss(G(noise()))
            adv.check_generator_step()
        assert calls["count"] == expected
        assert adv._d_snapshot is None


def test_a_correct_loop_passes_the_checks_in_debug_mode():
    G, D, adv, real = setup_models()
    adv.watch(G).debug = True
    g_opt = ndl.optim.Adam(G.parameters(), lr=1e-3)
    for _ in range(3):
        fake = G(noise())
        adv.discriminator_step(real, fake)
        g_loss = adv.generator_loss(fake)
        g_opt.reset_grad()
        g_loss.backward()
        g_opt.step()
        adv.check_generator_step()
    # G's parameters stay out of Adversarial's own parameters and state
    assert len(adv.parameters()) == len(D.parameters())
    assert all(k.startswith(("discriminator.", "optimizer.")) or k == "schedule.d_steps"
               for k in adv.state_dict())


@pytest.mark.parametrize("shape", [(6, 2), (6, 10), (3,), (6, 4, 5, 5)])
def test_discriminator_output_shape_is_checked(shape):
    from gan import DiscriminatorOutputError
    from needle import nn

    class WrongHead(nn.Module):
        def forward(self, x):
            return ndl.Tensor(np.zeros(shape, np.float32), requires_grad=False)

    adv = Adversarial(WrongHead(), NonSaturating(), ndl.optim.Adam([ndl.nn.Parameter(
        np.zeros(1, np.float32))]))
    real = ndl.Tensor(np.zeros((6, 1, 28, 28), np.float32))
    with pytest.raises(DiscriminatorOutputError) as error:
        adv.discriminator_step(real, real)
    message = str(error.value)
    assert f"{shape}" in message and "WrongHead" in message and "batch of 6" in message
    assert "NonSaturating" in message


@pytest.mark.parametrize("shape", [(6,), (6, 1), (6, 1, 3, 3)])
def test_per_image_and_patch_scores_are_accepted(shape):
    from needle import nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones(1, np.float32))

        def forward(self, x):
            return ops.broadcast_to(ops.reshape(self.w, (1,) * len(shape)), shape)

    head = Head()
    adv = Adversarial(head, NonSaturating(), ndl.optim.Adam(head.parameters()))
    real = ndl.Tensor(np.zeros((6, 1, 28, 28), np.float32))
    assert np.isfinite(adv.discriminator_step(real, real)["d_loss"])
