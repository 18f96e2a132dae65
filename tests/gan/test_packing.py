"""PacGAN's packed discriminator: packing against NumPy concatenation, the loss and the
penalties on packs against NumPy and PyTorch, and its use inside gan.Adversarial."""
import numpy as np
import pytest

import needle as ndl
from gan import Adversarial
from gan.models.mlp import MLPCritic
from gan.objectives import NonSaturating, Wasserstein
from gan.packing import Packed, PackedPenalty, pack, unpack
from gan.penalties import R1, GradientPenalty
from needle import nn, ops


class LinearScore(nn.Module):
    """score = flatten(x) . w + b, with w and b given: a D whose output NumPy can compute."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = nn.Parameter(ndl.Tensor(weight.reshape(-1, 1).astype(np.float32)))
        self.bias = nn.Parameter(ndl.Tensor(np.array([[bias]], dtype=np.float32)))

    def forward(self, x):
        flat = ops.reshape(x, (x.shape[0], int(np.prod(x.shape[1:]))))
        scores = flat @ self.weight + ops.broadcast_to(self.bias, (x.shape[0], 1))
        return ops.reshape(scores, (x.shape[0],))


def numpy_packs(x, m):
    """Pack p = samples p*m .. p*m + m - 1 joined on their first (feature / channel) axis."""
    return np.stack([np.concatenate([x[p * m + j] for j in range(m)], axis=0)
                     for p in range(len(x) // m)])


@pytest.mark.parametrize("shape, m", [((12, 2), 2), ((12, 2), 3), ((8, 3, 5, 5), 2),
                                      ((9, 1, 4, 4), 3)])
def test_forward_is_d_on_concatenated_packs_repeated(shape, m):
    rng = np.random.RandomState(0)
    x = rng.randn(*shape).astype(np.float32)
    width = int(np.prod(shape[1:])) * m
    weight, bias = rng.randn(width), 0.3
    D = Packed(LinearScore(weight, bias), pack=m)
    scores = D(ndl.Tensor(x)).numpy()
    packs = numpy_packs(x, m)
    assert packs.shape == (len(x) // m, shape[1] * m, *shape[2:])
    expected = packs.reshape(len(packs), -1) @ weight + bias
    assert scores.shape == (len(x),)
    np.testing.assert_allclose(scores, np.repeat(expected, m), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pack(ndl.Tensor(x), m).numpy(), packs)
    np.testing.assert_array_equal(unpack(ndl.Tensor(packs), m).numpy(), x)


def test_loss_gradient_is_the_mean_over_packs():
    """E over the N repeated scores is E over the N / m packs: value and D's gradient."""
    rng = np.random.RandomState(1)
    m, x = 2, rng.randn(10, 2).astype(np.float32)
    weight = rng.randn(2 * m)
    D = Packed(LinearScore(weight, -0.2), pack=m)
    loss = ops.mean(ops.softplus(-D(ndl.Tensor(x))))  # non-saturating G loss on D's scores
    loss.backward()
    packs = numpy_packs(x, m)
    logits = packs @ weight - 0.2
    np.testing.assert_allclose(loss.numpy(), np.mean(np.logaddexp(0, -logits)), rtol=1e-5)
    # d/dw mean_p softplus(-l_p) = mean_p -sigmoid(-l_p) * pack_p
    grad = np.mean(-(1 / (1 + np.exp(logits)))[:, None] * packs, axis=0)
    np.testing.assert_allclose(D.discriminator.weight.grad.numpy().ravel(), grad, rtol=1e-4,
                               atol=1e-6)


def test_gradient_penalty_on_packs_of_a_linear_d():
    """A linear D's gradient with respect to a pack is its weight: the packed penalty is
    10 (||w|| - 1)^2 whatever eps is; the per-sample one (unwrapped) is not."""
    rng = np.random.RandomState(2)
    m = 2
    real, fake = (ndl.Tensor(rng.randn(8, 2).astype(np.float32)) for _ in range(2))
    weight = rng.randn(2 * m)
    D = Packed(LinearScore(weight, 0.0), pack=m)
    score = D  # what Adversarial hands a penalty: D on (N, ...) samples
    packed = D.penalty(GradientPenalty(10.0))
    assert isinstance(packed, PackedPenalty)
    value = float(packed(score, real, fake).numpy())
    assert value == pytest.approx(10 * (np.linalg.norm(weight) - 1) ** 2, rel=1e-5)
    unwrapped = float(GradientPenalty(10.0)(score, real, fake).numpy())
    assert abs(unwrapped - value) > 1e-3


def _torch_mlp(torch, critic, in_features):
    """PyTorch twin of an MLPCritic (hidden ReLU layers, linear score) with its weights."""
    layers = [m for m in critic.net.modules if isinstance(m, nn.Linear)]
    modules = []
    for i, layer in enumerate(layers):
        linear = torch.nn.Linear(layer.weight.shape[0], layer.weight.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.weight.numpy().T.astype(np.float64)))
            linear.bias.copy_(torch.from_numpy(layer.bias.numpy().reshape(-1).astype(np.float64)))
        modules.append(linear)
        if i < len(layers) - 1:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules).double()


@pytest.mark.parametrize("which", ["gp", "r1"])
def test_penalties_on_packs_against_pytorch(which):
    """WGAN-GP (one eps per pack, norm over the whole pack) and R1 on packs of a ReLU MLP:
    the penalty's value and D's weight gradients (double backward) against PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(3)
    m, n = 2, 12
    np.random.seed(4)
    critic = MLPCritic(2 * m, hidden=16, layers=2)
    D = Packed(critic, pack=m)
    real = rng.randn(n, 2).astype(np.float32)
    fake = rng.randn(n, 2).astype(np.float32)
    penalty = D.penalty(GradientPenalty(10.0) if which == "gp" else R1(gamma=4.0))
    np.random.seed(5)
    value = penalty(D, ndl.Tensor(real), ndl.Tensor(fake))
    for p in critic.parameters():
        p.grad = None
    value.backward()

    twin = _torch_mlp(torch, critic, 2 * m)
    real_p = torch.from_numpy(numpy_packs(real, m).astype(np.float64))
    fake_p = torch.from_numpy(numpy_packs(fake, m).astype(np.float64))
    if which == "gp":
        np.random.seed(5)
        eps = torch.from_numpy(np.random.rand(n // m, 1).astype(np.float32).astype(np.float64))
        x = (eps * real_p + (1 - eps) * fake_p).requires_grad_(True)
    else:
        x = real_p.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(twin(x).sum(), x, create_graph=True)
    if which == "gp":
        expected = 10.0 * ((torch.sqrt((g ** 2).sum(1) + 1e-12) - 1) ** 2).mean()
    else:
        expected = 2.0 * (g ** 2).sum(1).mean()
    expected.backward()
    np.testing.assert_allclose(float(value.numpy()), expected.item(), rtol=1e-4)
    layers = [layer for layer in critic.net.modules if isinstance(layer, nn.Linear)]
    torch_layers = [layer for layer in twin if isinstance(layer, torch.nn.Linear)]
    for ours, theirs in zip(layers, torch_layers):
        np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy().T,
                                   rtol=1e-3, atol=1e-5)


def test_trains_inside_adversarial_with_a_penalty():
    np.random.seed(0)
    D = Packed(lambda m: MLPCritic(2 * m, hidden=8, layers=1), pack=2)
    assert D.discriminator.in_features == 4
    adversarial = Adversarial(D, Wasserstein(), ndl.optim.Adam(D.parameters(), lr=1e-3),
                              penalties=[D.penalty(GradientPenalty(10.0))])
    real = ndl.Tensor(np.random.randn(16, 2).astype(np.float32))
    fake = ndl.Tensor(np.random.randn(16, 2).astype(np.float32))
    before = [p.numpy().copy() for p in D.parameters()]
    figures = adversarial.discriminator_step(real, fake)
    assert np.isfinite(figures["d_loss"]) and figures["penalty_PackedPenalty"] >= 0
    assert any(not np.array_equal(b, p.numpy()) for b, p in zip(before, D.parameters()))
    assert {k.split(".")[1] for k in adversarial.state_dict() if k.startswith("disc")} == \
        {"discriminator"}
    g_loss = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters())).generator_loss(
        fake)
    assert g_loss.shape == ()


def test_bad_setups_are_named():
    with pytest.raises(ValueError, match="Packed: pack must be an integer >= 1, got 0"):
        Packed(MLPCritic(2), pack=0)
    with pytest.raises(TypeError, match="Packed: expected a discriminator module or a factory"):
        Packed(3, pack=2)
    with pytest.raises(TypeError, match="the factory returned int"):
        Packed(lambda m: m, pack=2)
    D = Packed(MLPCritic(6), pack=3)
    with pytest.raises(ValueError, match="a batch of 4 samples does not split into packs of 3"):
        D(ndl.Tensor(np.zeros((4, 2), np.float32)))
