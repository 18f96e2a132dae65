"""SpectralNorm: power iteration against numpy.linalg.svd and a NumPy re-implementation,
forward and gradients against NumPy and against torch.nn.utils.parametrizations.spectral_norm
given the same u and v, a gradient penalty's second derivatives (gradcheck and PyTorch's
double backward), frozen u in eval mode, bit-exact state-dict and Trainer resume, and the
DCGAN discriminator wrapped by spectral_norm training with WGAN-GP and R1."""
import os

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import needle as ndl
from gan import Adversarial, Trainer, TrainerConfig
from gan.checkpoint import latest_checkpoint
from gan.models.dcgan import Discriminator, Generator
from gan.objectives import NonSaturating, Wasserstein
from gan.penalties import R1, GradientPenalty
from gan.spectral_norm import SpectralNorm, spectral_norm
from needle import nn
from needle.gradcheck import gradcheck
from tests.strategies import grad_settings

KINDS = ["Linear", "Conv", "Conv2d", "ConvTranspose2d", "Embedding"]


def build_layer(kind, a, b, k, device=None, dtype="float64"):
    """A layer with `a` inputs and `b` outputs (Embedding: a rows of width b)."""
    kw = dict(device=device, dtype=dtype)
    return {"Linear": lambda: nn.Linear(a, b, **kw),
            "Conv": lambda: nn.Conv(a, b, k, **kw),
            "Conv2d": lambda: nn.Conv2d(a, b, k, stride=2, padding=1, **kw),
            "ConvTranspose2d": lambda: nn.ConvTranspose2d(a, b, k, stride=2, padding=1, **kw),
            "Embedding": lambda: nn.Embedding(a, b, **kw)}[kind]()


def layer_input(kind, a, seed, device=None):
    rng = np.random.default_rng(seed)
    if kind == "Linear":
        x = rng.standard_normal((3, a))
    elif kind == "Embedding":
        x = rng.integers(0, a, (2, 3)).astype(np.float64)
    else:
        x = rng.standard_normal((2, a, 5, 5) if kind != "ConvTranspose2d" else (2, a, 3, 3))
    return ndl.Tensor(x, device=device, dtype="float64")


def torch_weight(kind, weight):
    """Our weight in PyTorch's layout (Linear (out, in); convs (Cout, Cin, K, K), transposed
    conv (Cin, Cout, K, K)); Embedding's is the same."""
    if kind == "Linear":
        return weight.T
    if kind == "Embedding":
        return weight
    return weight.transpose(3, 2, 0, 1)


def weight_matrix(kind, weight):
    """torch.nn.utils.spectral_norm's matrix: PyTorch's weight with axis `dim` (1 for
    transposed convs, else 0) moved first, the rest flattened."""
    w = torch_weight(kind, weight)
    if kind == "ConvTranspose2d":
        w = np.swapaxes(w, 0, 1)
    return w.reshape(w.shape[0], -1)


def numpy_step(W, u, v):
    """One power-iteration step in PyTorch's order: (u, v, sigma)."""
    u = W @ v / max(np.linalg.norm(W @ v), 1e-12)
    v = W.T @ u / max(np.linalg.norm(W.T @ u), 1e-12)
    return u, v, u @ (W @ v)


@st.composite
def layer_cases(draw, kinds=KINDS):
    """(kind, a, b, k, seed)."""
    return (draw(st.sampled_from(kinds)), draw(st.integers(1, 5)), draw(st.integers(1, 5)),
            draw(st.sampled_from([1, 3])), draw(st.integers(0, 2 ** 16)))


# ---- power iteration ---------------------------------------------------------------------
@given(case=layer_cases())
def test_sigma_after_many_steps_is_the_largest_singular_value(case):
    kind, a, b, k, seed = case
    np.random.seed(seed)
    layer = build_layer(kind, a, b, k)
    W = weight_matrix(kind, layer.weight.numpy())
    singular = np.linalg.svd(W, compute_uv=False)
    assume(len(singular) == 1 or singular[1] < 0.9 * singular[0])  # converges in < 400 steps
    sn = SpectralNorm(layer, n_power_iterations=400)
    assert sn.weight_u.shape == (W.shape[0],) and sn.weight_v.shape == (W.shape[1],)
    sn(layer_input(kind, a, seed))
    np.testing.assert_allclose(sn.sigma().numpy(), singular[0], rtol=1e-9)
    # and W / sigma, what the layer ran with, has spectral norm 1
    normalised = W / sn.sigma().numpy()
    np.testing.assert_allclose(np.linalg.svd(normalised, compute_uv=False)[0], 1.0, rtol=1e-9)


@given(case=layer_cases())
def test_one_training_forward_is_one_numpy_power_step(case, device):
    kind, a, b, k, seed = case
    np.random.seed(seed)
    sn = SpectralNorm(build_layer(kind, a, b, k, device=device))
    W = weight_matrix(kind, sn.layer.weight.numpy())
    u, v, sigma = numpy_step(W, sn.weight_u.numpy(), sn.weight_v.numpy())
    x = layer_input(kind, a, seed, device)
    out = sn(x)
    np.testing.assert_allclose(sn.weight_u.numpy(), u, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sn.weight_v.numpy(), v, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sn.sigma().numpy(), sigma, rtol=1e-12)
    # the layer ran with W / sigma, and its own weight is back
    assert type(sn.layer.weight) is nn.Parameter
    plain = build_layer(kind, a, b, k, device=device)
    plain.weight = ndl.Tensor(sn.layer.weight.numpy() / sigma, device=device, dtype="float64")
    if getattr(plain, "bias", None) is not None:
        plain.bias = sn.layer.bias
    np.testing.assert_allclose(out.numpy(), plain(x).numpy(), rtol=1e-11, atol=1e-12)


def test_u_and_v_start_as_normalised_numpy_draws_then_fifteen_steps():
    np.random.seed(3)
    layer = nn.Linear(4, 3, dtype="float64")
    state = np.random.get_state()
    u, v = np.random.standard_normal(3), np.random.standard_normal(4)
    np.random.set_state(state)
    sn = SpectralNorm(layer)
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    for _ in range(15):
        u, v, _ = numpy_step(layer.weight.numpy().T, u, v)
    np.testing.assert_allclose(sn.weight_u.numpy(), u, rtol=1e-12)
    np.testing.assert_allclose(sn.weight_v.numpy(), v, rtol=1e-12)


# ---- forward and gradients ---------------------------------------------------------------
@given(a=st.integers(1, 5), b=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_linear_forward_and_gradients_match_numpy(a, b, seed):
    """y = x (W / sigma) + b with sigma = u^T W^T v; u, v constants in the gradient:
    dL/dW = G / sigma - <G, W> / sigma^2 * v u^T, with G = x^T dL/dy."""
    np.random.seed(seed)
    sn = SpectralNorm(nn.Linear(a, b, dtype="float64"))
    x = layer_input("Linear", a, seed)
    W, bias = sn.layer.weight.numpy(), sn.layer.bias.numpy()
    u, v, sigma = numpy_step(W.T, sn.weight_u.numpy(), sn.weight_v.numpy())
    out = sn(x)
    np.testing.assert_allclose(out.numpy(), x.numpy() @ (W / sigma) + bias, rtol=1e-11,
                               atol=1e-12)
    out_grad = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(ndl.Tensor(out_grad, dtype="float64", requires_grad=False))
    G = x.numpy().T @ out_grad
    expected = G / sigma - np.sum(G * W) / sigma ** 2 * np.outer(v, u)
    np.testing.assert_allclose(sn.layer.weight.grad.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), out_grad @ (W / sigma).T, rtol=1e-11,
                               atol=1e-12)


def torch_layer(torch, kind, layer, a, b, k):
    """The same layer in PyTorch, holding `layer`'s weights, under parametrizations'
    spectral_norm (its default dim: 1 for ConvTranspose2d, else 0)."""
    f64 = dict(dtype=torch.float64)
    reference = {"Linear": lambda: torch.nn.Linear(a, b, **f64),
                 "Conv": lambda: torch.nn.Conv2d(a, b, k, padding=k // 2, **f64),
                 "Conv2d": lambda: torch.nn.Conv2d(a, b, k, stride=2, padding=1, **f64),
                 "ConvTranspose2d": lambda: torch.nn.ConvTranspose2d(a, b, k, stride=2,
                                                                     padding=1, **f64),
                 "Embedding": lambda: torch.nn.Embedding(a, b, **f64)}[kind]()
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(
            np.ascontiguousarray(torch_weight(kind, layer.weight.numpy()))))
        if getattr(layer, "bias", None) is not None:
            reference.bias.copy_(torch.from_numpy(layer.bias.numpy().reshape(-1)))
    return torch.nn.utils.parametrizations.spectral_norm(reference)


def set_torch_vectors(torch, reference, sn):
    parametrization = reference.parametrizations.weight[0]
    with torch.no_grad():
        parametrization._u.copy_(torch.from_numpy(sn.weight_u.numpy()))
        parametrization._v.copy_(torch.from_numpy(sn.weight_v.numpy()))
    return parametrization


def torch_input(torch, kind, x):
    values = torch.from_numpy(x.numpy())
    return values.long() if kind == "Embedding" else values.requires_grad_(True)


@given(case=layer_cases())
def test_training_and_eval_forward_and_gradients_match_torch(case):
    torch = pytest.importorskip("torch")
    kind, a, b, k, seed = case
    np.random.seed(seed)
    sn = SpectralNorm(build_layer(kind, a, b, k))
    reference = torch_layer(torch, kind, sn.layer, a, b, k)
    parametrization = set_torch_vectors(torch, reference, sn)
    for training in (True, False):
        sn.train(training)
        reference.train(training)
        x = layer_input(kind, a, seed)
        t_x = torch_input(torch, kind, x)
        out, t_out = sn(x), reference(t_x)
        np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(sn.weight_u.numpy(), parametrization._u.numpy(),
                                   rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(sn.weight_v.numpy(), parametrization._v.numpy(),
                                   rtol=1e-10, atol=1e-13)
        out_grad = np.random.default_rng(seed + 1).standard_normal(out.shape)
        sn.layer.weight.grad = None
        out.backward(ndl.Tensor(out_grad, dtype="float64", requires_grad=False))
        original = reference.parametrizations.weight.original
        original.grad = None
        t_out.backward(torch.from_numpy(out_grad))
        np.testing.assert_allclose(torch_weight(kind, sn.layer.weight.grad.numpy()),
                                   original.grad.numpy(), rtol=1e-9, atol=1e-11)
        if kind != "Embedding":
            np.testing.assert_allclose(x.grad.numpy(), t_x.grad.numpy(), rtol=1e-9,
                                       atol=1e-11)


# ---- second order: a gradient penalty through spectrally normalised layers ---------------
def sn_critic(seed):
    """x (3, 1, 5, 5) -> SN(Conv2d 1->2, 3x3, stride 2) -> tanh -> SN(Linear 18 -> 1) -> (3,)."""
    np.random.seed(seed)
    conv = SpectralNorm(nn.Conv2d(1, 2, 3, stride=2, padding=1, dtype="float64"))
    linear = SpectralNorm(nn.Linear(18, 1, dtype="float64"))

    def score(x):
        hidden = ndl.tanh(conv(x))
        return ndl.reshape(linear(ndl.reshape(hidden, (x.shape[0], 18))), (x.shape[0],))
    return conv, linear, score


def images(seed):
    return ndl.Tensor(np.random.default_rng(seed).standard_normal((3, 1, 5, 5)),
                      dtype="float64", requires_grad=False)


@given(seed=st.integers(0, 2 ** 16))
@grad_settings()
def test_r1_through_spectral_norm_matches_torch_double_backward(seed):
    torch = pytest.importorskip("torch")
    conv, linear, score = sn_critic(seed)
    t_conv = torch_layer(torch, "Conv2d", conv.layer, 1, 2, 3)
    t_linear = torch_layer(torch, "Linear", linear.layer, 18, 1, None)
    for sn, reference in ((conv, t_conv), (linear, t_linear)):
        set_torch_vectors(torch, reference, sn)
    real = images(seed)
    penalty = R1(gamma=10.0)(score, real, real)
    grads = ndl.grad([penalty], [conv.layer.weight, linear.layer.weight])

    t_real = torch.from_numpy(real.numpy()).requires_grad_(True)
    t_score = t_linear(torch.tanh(t_conv(t_real)).reshape(3, 18)).reshape(3)
    (t_input_grad,) = torch.autograd.grad(t_score.sum(), t_real, create_graph=True)
    t_penalty = 5.0 * (t_input_grad ** 2).sum(dim=(1, 2, 3)).mean()
    t_grads = torch.autograd.grad(t_penalty, [t_conv.parametrizations.weight.original,
                                              t_linear.parametrizations.weight.original])
    np.testing.assert_allclose(penalty.numpy(), t_penalty.item(), rtol=1e-10)
    np.testing.assert_allclose(torch_weight("Conv2d", grads[0].numpy()), t_grads[0].numpy(),
                               rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(torch_weight("Linear", grads[1].numpy()), t_grads[1].numpy(),
                               rtol=1e-8, atol=1e-11)


def test_r1_through_spectral_norm_passes_gradcheck_in_the_weights():
    """The penalty as a function of both raw weights (u, v frozen: eval mode), checked
    numerically: the derivative of a gradient, through sigma."""
    conv, linear, score = sn_critic(5)
    conv.eval(), linear.eval()
    real = images(6)

    def penalty(conv_weight, linear_weight):
        conv.layer.weight, linear.layer.weight = conv_weight, linear_weight
        return R1(gamma=10.0)(score, real, real)

    weights = [ndl.Tensor(sn.layer.weight.numpy(), dtype="float64") for sn in (conv, linear)]
    assert gradcheck(penalty, *weights, name="R1 through SpectralNorm")


# ---- modes and state ---------------------------------------------------------------------
def test_eval_freezes_u_and_v_and_train_resumes_the_iteration():
    np.random.seed(0)
    sn = SpectralNorm(nn.Linear(6, 4, dtype="float64"))
    u = np.random.standard_normal(4)
    sn.load_state_dict(dict(sn.state_dict(), weight_u=u / np.linalg.norm(u)))  # far from u*
    stored = {key: value for key, value in sn.state_dict().items()}
    x = layer_input("Linear", 6, 1)
    sn.eval()
    first, second = sn(x).numpy(), sn(x).numpy()
    for key, value in sn.state_dict().items():
        np.testing.assert_array_equal(value, stored[key], err_msg=key)
    np.testing.assert_array_equal(first, second)
    sigma = stored["weight_u"] @ stored["layer.weight"].T @ stored["weight_v"]
    np.testing.assert_allclose(first, x.numpy() @ stored["layer.weight"] / sigma
                               + stored["layer.bias"], rtol=1e-11)
    sn.train()
    sn(x)
    assert not np.allclose(sn.weight_u.numpy(), stored["weight_u"])


def discriminator(seed):
    np.random.seed(seed)
    return spectral_norm(Discriminator(width=4, norm="none"))


def test_discriminator_state_dict_names_and_bit_exact_round_trip():
    D = discriminator(0)
    assert list(D.state_dict()) == [
        f"{prefix}.{name}" for prefix in ("features.modules.0", "features.modules.2", "head")
        for name in ("layer.weight", "weight_u", "weight_v")]
    x = ndl.Tensor(np.random.default_rng(0).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32),
                   requires_grad=False)
    for _ in range(3):
        D(x)  # u and v move away from their start
    copy = discriminator(1)
    assert not np.array_equal(copy.head.weight_u.numpy(), D.head.weight_u.numpy())
    copy.load_state_dict(D.state_dict())
    np.testing.assert_array_equal(copy(x).numpy(), D(x).numpy())
    for (key, value), (copy_key, copy_value) in zip(D.state_dict().items(),
                                                   copy.state_dict().items()):
        assert key == copy_key
        np.testing.assert_array_equal(copy_value, value, err_msg=key)


IMAGES = np.random.RandomState(0).uniform(-1, 1, (48, 1, 28, 28)).astype(np.float32)


def make_trainer(out_dir, **config):
    np.random.seed(0)
    G, D = Generator(latent_dim=8, width=4), spectral_norm(Discriminator(width=4, norm="none"))
    adv = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3),
                      penalties=[R1(gamma=1.0)])
    settings = dict(out_dir=str(out_dir), epochs=2, batch_size=8, latent_dim=8,
                    checkpoint_every=2, log_every=1, num_samples=16, progress=False,
                    health=False)
    settings.update(config)
    return Trainer(G, adv, ndl.optim.Adam(G.parameters(), lr=1e-3), IMAGES,
                   TrainerConfig(**settings))


def test_trainer_resume_with_spectral_norm_is_bit_exact(tmp_path):
    """Stop after 4 of 12 steps, resume: u, v and every weight equal a straight run's."""
    make_trainer(tmp_path / "straight").train()
    make_trainer(tmp_path / "split", max_steps=4).train()
    make_trainer(tmp_path / "split", resume=True).train()
    straight, split = (ndl.load(latest_checkpoint(os.path.join(tmp_path, run, "checkpoints")))
                       for run in ("straight", "split"))
    assert "adversarial.discriminator.head.weight_u" in straight
    assert straight.keys() == split.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], split[key], err_msg=key)
    start = discriminator(0).state_dict()  # u and v were trained, not just saved
    for key in ("features.modules.2.weight_u", "head.weight_v"):
        assert not np.array_equal(start[key], straight[f"adversarial.discriminator.{key}"])


@pytest.mark.parametrize("objective, penalty", [(Wasserstein(), GradientPenalty(10.0)),
                                                (NonSaturating(), R1(gamma=10.0))],
                         ids=["wgan-gp", "r1"])
def test_spectrally_normalised_dcgan_discriminator_trains_a_step(objective, penalty):
    np.random.seed(0)
    G, D = Generator(latent_dim=8, width=4), Discriminator(width=4, norm="none")
    parameters = D.parameters()
    assert spectral_norm(D) is D
    assert [id(p) for p in D.parameters()] == [id(p) for p in parameters]  # each once, same
    adv = Adversarial(D, objective, ndl.optim.Adam(D.parameters(), lr=1e-3),
                      penalties=[penalty], generator=G)
    real = ndl.Tensor(np.random.uniform(-1, 1, (6, 1, 28, 28)).astype(np.float32),
                      requires_grad=False)
    before = {key: value for key, value in D.state_dict().items()}
    figures = adv.discriminator_step(real, G(ndl.init.randn(6, 8)))
    assert all(np.isfinite(value) for value in figures.values())
    assert figures[f"penalty_{type(penalty).__name__}"] > 0
    after = D.state_dict()
    # every W, u and v moved, except the head's: a one-output (1, rest) matrix has its
    # singular vectors u = 1, v = w / ||w|| exactly, and this step's forwards saw the old w
    assert [key for key in before if np.array_equal(before[key], after[key])] == \
        ["head.weight_u", "head.weight_v"]
    g_optimizer = ndl.optim.Adam(G.parameters(), lr=1e-3)
    loss = adv.generator_loss(G(ndl.init.randn(6, 8)))
    g_optimizer.reset_grad()
    loss.backward(create_graph=False)
    g_optimizer.step()
    adv.check_generator_step()  # the G step left D's weights alone
    assert np.isfinite(loss.numpy())


# ---- spectral_norm on module trees, and errors -------------------------------------------
class Tree(nn.Module):
    def __init__(self):
        super().__init__()
        shared = nn.Linear(3, 3)
        self.blocks = [shared, nn.ReLU(), nn.Sequential(nn.Conv(3, 3, 1), shared)]
        self.heads = {"a": nn.Linear(3, 2), "b": nn.Residual(nn.Linear(3, 3))}
        self.norm = nn.BatchNorm1d(3)


def test_spectral_norm_wraps_lists_dicts_sequentials_and_shares_a_shared_layer():
    np.random.seed(0)
    tree = Tree()
    parameters = tree.parameters()
    assert spectral_norm(tree) is tree
    inner = tree.blocks[2].modules
    assert all(isinstance(m, SpectralNorm) for m in
               (tree.blocks[0], inner[0], inner[1], tree.heads["a"], tree.heads["b"].fn))
    assert tree.blocks[0] is inner[1]  # the shared layer has one wrapper
    assert isinstance(tree.blocks[1], nn.ReLU) and isinstance(tree.norm, nn.BatchNorm1d)
    assert [id(p) for p in tree.parameters()] == [id(p) for p in parameters]


def test_spectral_norm_of_a_layer_returns_its_wrapper():
    layer = nn.Linear(3, 2)
    wrapper = spectral_norm(layer, n_power_iterations=2)
    assert isinstance(wrapper, SpectralNorm) and wrapper.layer is layer
    assert wrapper.n_power_iterations == 2


def test_spectral_norm_twice_is_refused_naming_the_wrapped_layers():
    D = discriminator(0)
    with pytest.raises(ValueError, match=r"spectral_norm: Discriminator already holds "
                                         r"spectrally normalised layers \(features\.modules\.0, "
                                         r"features\.modules\.2, head\); apply it once"):
        spectral_norm(D)
    with pytest.raises(ValueError, match="already holds spectrally normalised layers "
                                         r"\(<the module itself>\)"):
        spectral_norm(D.head)
    with pytest.raises(ValueError, match=r"SpectralNorm: SpectralNorm\(.*\) is already "
                                         "spectrally normalised"):
        SpectralNorm(D.head)


@pytest.mark.parametrize("make, message", [
    (lambda: SpectralNorm(nn.ReLU()), "SpectralNorm: ReLU has no .weight Parameter to "
                                      "normalise"),
    (lambda: SpectralNorm(nn.Linear(2, 2), n_power_iterations=0),
     "SpectralNorm: n_power_iterations must be an integer >= 1, got 0"),
    (lambda: SpectralNorm(nn.Linear(2, 2), n_power_iterations=1.5),
     "SpectralNorm: n_power_iterations must be an integer >= 1, got 1.5"),
    (lambda: SpectralNorm(nn.Linear(2, 2), eps=0.0), r"SpectralNorm: eps must be > 0, got 0\.0"),
    (lambda: spectral_norm(nn.Sequential(nn.ReLU(), nn.Tanh())),
     "spectral_norm: Sequential holds no Linear, Conv, Conv2d or ConvTranspose2d layer"),
])
def test_bad_arguments_are_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_spectral_norm_of_a_non_module_is_a_type_error():
    with pytest.raises(TypeError, match="spectral_norm: expected a needle Module, got list"):
        spectral_norm([nn.Linear(2, 2)])
