"""The toolkit techniques that live in gan.Adversarial and gan.models: the minibatch-std
layer, lazy penalties, feature matching, RpGAN's pairing and the augmentation hook, each
against NumPy computed here."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from gan import Adversarial
from gan.errors import GANSetupError
from gan.models import Discriminator, MinibatchStd
from gan.objectives import NonSaturating, RelativisticPairing, Wasserstein
from gan.penalties import R1, GradientPenalty
from needle import nn
from needle.gradcheck import gradcheck, gradgradcheck


def minibatch_std_numpy(x, group_size=4, eps=1e-8):
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    out = np.empty((n, 1, h, w))
    for m in range(n // g):
        members = [m + k * (n // g) for k in range(g)]  # sample n is in group n mod N/G
        std = np.sqrt(x[members].var(axis=0) + eps)
        out[members] = std.mean()
    return np.concatenate([x, out], axis=1)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 3), side=st.integers(1, 3),
       group=st.integers(1, 5), seed=st.integers(0, 99))
def test_minibatch_std_matches_numpy(n, c, side, group, seed):
    x = np.random.default_rng(seed).normal(size=(n, c, side, side))
    out = MinibatchStd(group)(ndl.Tensor(x, dtype="float64"))
    np.testing.assert_allclose(out.numpy(), minibatch_std_numpy(x, group), rtol=1e-12)


@settings(max_examples=8, deadline=None)
@given(n=st.sampled_from([2, 4, 6, 8]), seed=st.integers(0, 99))
def test_minibatch_std_gradients(n, seed):
    x = ndl.Tensor(np.random.default_rng(seed).normal(size=(n, 2, 2, 2)), dtype="float64")
    assert gradcheck(lambda t: MinibatchStd(4)(t), x)
    assert gradgradcheck(lambda t: MinibatchStd(4)(t), x)


def test_minibatch_std_in_the_dcgan_discriminator():
    """The head takes the extra channel; D's outputs change with the batch's spread."""
    np.random.seed(0)
    D = Discriminator(channels=1, image_size=28, width=4, norm="none", minibatch_std=True)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    alone = D(ndl.Tensor(x)).numpy()
    spread = x.copy()
    spread[1:] = x[:1]  # the same image four times: zero spread
    assert D(ndl.Tensor(spread)).numpy()[0] != pytest.approx(alone[0])
    with pytest.raises(ValueError, match="MinibatchStd: group_size"):
        MinibatchStd(0)


class Linear1(nn.Module):
    """A critic x (N, 3) -> (N,) with `features`, small enough to follow by hand."""

    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = nn.Parameter(ndl.Tensor(rng.normal(size=(3, 4)), dtype="float64"))
        self.v = nn.Parameter(ndl.Tensor(rng.normal(size=(4, 1)), dtype="float64"))

    def features(self, x):
        return ndl.tanh(x @ self.w)

    def forward(self, x):
        return ndl.reshape(self.features(x) @ self.v, (x.shape[0],))


def adversarial(D, objective=None, **kwargs):
    optimizer = ndl.optim.SGD(D.parameters(), lr=0.0)
    return Adversarial(D, objective or NonSaturating(), optimizer, **kwargs)


def batch(seed, n=5):
    return ndl.Tensor(np.random.default_rng(seed).normal(size=(n, 3)), dtype="float64",
                      requires_grad=False)


def test_lazy_penalty_runs_every_kth_step_scaled_by_k():
    D = Linear1()
    real, fake = batch(1), batch(2)
    eager = adversarial(D, penalties=[R1(gamma=2.0)]).discriminator_loss(real, fake)[3]
    lazy = adversarial(D, penalties=[R1(gamma=2.0, every=4)])
    seen = []
    for _ in range(8):
        figures = lazy.discriminator_step(real, fake)
        seen.append("penalty_R1" in figures)
        if seen[-1]:
            assert figures["penalty_R1"] == pytest.approx(4 * float(eager["R1"].numpy()))
    assert seen == [True, False, False, False] * 2
    assert int(lazy.state_dict()["schedule.d_steps"]) == 8


def test_lazy_schedule_resumes_from_the_state_dict():
    first = adversarial(Linear1(), penalties=[GradientPenalty(every=3)])
    for _ in range(2):
        first.discriminator_step(batch(1), batch(2))
    second = adversarial(Linear1(), penalties=[GradientPenalty(every=3)])
    second.load_state_dict(first.state_dict())
    assert second.d_steps == 2
    assert "penalty_GradientPenalty" not in second.discriminator_step(batch(1), batch(2))
    assert "penalty_GradientPenalty" in second.discriminator_step(batch(1), batch(2))
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        R1(every=0)


def test_feature_matching_term_and_gradient_match_numpy():
    D = Linear1()
    real_x, fake_x = batch(3, 6), np.random.default_rng(4).normal(size=(4, 3))
    fake = ndl.Tensor(fake_x, dtype="float64")
    weight = 2.5
    with_fm = adversarial(D, Wasserstein(), feature_matching=weight)
    loss = with_fm.generator_loss(fake, real=real_x)
    w, v = D.w.numpy(), D.v.numpy()
    gap = np.tanh(real_x.numpy() @ w).mean(0) - np.tanh(fake_x @ w).mean(0)
    expected = -(np.tanh(fake_x @ w) @ v).mean() + weight * np.mean(gap ** 2)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12)
    loss.backward()
    # d/dfake of weight * mean(gap^2): -2 weight gap / (width * n_fake) through tanh
    t = np.tanh(fake_x @ w)
    d_features = (-v.T / 4) + (-2 * weight * gap / (4 * 4))
    np.testing.assert_allclose(fake.grad.numpy(), (d_features * (1 - t ** 2)) @ w.T,
                               rtol=1e-10)


def test_feature_matching_needs_features_and_a_real_batch():
    class NoFeatures(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(GANSetupError, match="has no callable .features"):
        adversarial(NoFeatures(), feature_matching=1.0)
    with pytest.raises(GANSetupError, match="feature matching needs a real batch"):
        adversarial(Linear1(), feature_matching=1.0).generator_loss(batch(1))


def test_rpgan_generator_loss_pairs_with_detached_real_scores():
    D = Linear1()
    real, fake_x = batch(5), np.random.default_rng(6).normal(size=(5, 3))
    fake = ndl.Tensor(fake_x, dtype="float64")
    loss = adversarial(D, RelativisticPairing()).generator_loss(fake, real=real)
    score = lambda x: (np.tanh(x @ D.w.numpy()) @ D.v.numpy())[:, 0]  # noqa: E731
    np.testing.assert_allclose(loss.numpy(),
                               np.logaddexp(0, score(real.numpy()) - score(fake_x)).mean(),
                               rtol=1e-12)
    loss.backward()
    assert D.w.grad is not None  # through the generated scores only
    with pytest.raises(GANSetupError, match="RpGAN's pairing needs a real batch"):
        adversarial(D, RelativisticPairing()).generator_loss(fake)


class Doubling:
    """A stand-in augmentation: x -> 2x, with an adaptive augmentation's hooks."""

    def __init__(self):
        self.p, self.observed = 0.25, []

    def __call__(self, x):
        return x * 2

    def observe(self, scores):
        self.observed.append(np.asarray(scores).copy())

    def state_dict(self):
        return {"p": np.array(self.p)}

    def load_state_dict(self, state):
        self.p = float(state["p"])


def test_augmentation_reaches_the_losses_the_penalties_and_the_state():
    D = Linear1()
    real, fake = batch(7), batch(8)
    plain = adversarial(D, penalties=[R1(gamma=1.0)])
    augmented = adversarial(D, penalties=[R1(gamma=1.0)], augment=Doubling())
    loss, real_scores, _, penalties = augmented.discriminator_loss(real, fake)
    doubled = lambda t: ndl.Tensor(t.numpy() * 2, dtype="float64",  # noqa: E731
                                   requires_grad=False)
    expected, _, _, _ = plain.discriminator_loss(doubled(real), doubled(fake))
    # R1 is taken w.r.t. the un-augmented image: the chain rule gives a factor 2^2
    r1_on_doubled = plain.discriminator_loss(doubled(real), fake)[3]["R1"].numpy()
    np.testing.assert_allclose(penalties["R1"].numpy(), 4 * r1_on_doubled, rtol=1e-10)
    np.testing.assert_allclose((loss - penalties["R1"]).numpy(),
                               (expected - plain.discriminator_loss(
                                   doubled(real), doubled(fake))[3]["R1"]).numpy(), rtol=1e-10)
    g = augmented.generator_loss(fake)
    np.testing.assert_allclose(g.numpy(), plain.generator_loss(doubled(fake)).numpy(),
                               rtol=1e-12)
    figures = augmented.discriminator_step(real, fake)
    assert figures["augment_p"] == 0.25 and len(augmented.augment.observed) == 1
    state = augmented.state_dict()
    assert float(state["augment.p"]) == 0.25
    restored = adversarial(Linear1(), augment=Doubling())
    restored.augment.p = 0.9
    restored.load_state_dict(state)
    assert restored.augment.p == 0.25
    with pytest.raises(KeyError, match="no adaptive augmentation"):
        adversarial(Linear1()).load_state_dict(state)
