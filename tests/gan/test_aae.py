"""The adversarial autoencoder: the priors' geometry and sampling against NumPy, D-on-codes
losses by hand on a tiny case, one step of each phase recomputed, the adaptive weight's
warm-up, the app's dry runs, option errors and interrupted runs resumed bit for bit."""
import json
import os

import numpy as np
import pytest

import needle as ndl
from apps import train_aae
from gan import Adversarial
from gan.loss_balance import AdaptiveWeight
from gan.models.autoencoder import Decoder, Encoder, LabelledCodeCritic
from gan.models.mlp import MLPCritic
from gan.objectives import NonSaturating
from gan.priors import Mixture10, Normal, make_prior
from gan.recipes.aae import AAERecipe
from needle import nn
from tests.gan.test_kill_resume import final_state
from tests.gan.test_pix2pix import tiny_mnist

pytestmark = pytest.mark.nd_only  # the GAN apps run on the NDArray flavour


# ---- the priors --------------------------------------------------------------------------
def test_mixture10_is_ten_radially_elongated_gaussians_on_a_circle_of_radius_1_4():
    prior = Mixture10()
    angles = 2 * np.pi * np.arange(10) / 10
    np.testing.assert_allclose(prior.centres, 1.4 * np.c_[np.cos(angles), np.sin(angles)])
    rng = np.random.RandomState(0)
    for k in (0, 3, 7):
        points = prior.sample(40000, rng, labels=np.full(40000, k)).astype(np.float64)
        radial = np.array([np.cos(angles[k]), np.sin(angles[k])])
        across = np.array([-radial[1], radial[0]])
        offsets = points - prior.centres[k]
        assert np.abs(offsets.mean(0)).max() < 0.01
        assert (offsets @ radial).std() == pytest.approx(0.5, rel=0.02)
        assert (offsets @ across).std() == pytest.approx(0.1, rel=0.02)
        assert abs(np.corrcoef(offsets @ radial, offsets @ across)[0, 1]) < 0.02
        np.testing.assert_allclose(np.cov(offsets.T), prior.covariances()[k], atol=0.006)
    # R diag(0.25, 0.01) R^T by hand for component 1 (at 36 degrees)
    c, s = np.cos(angles[1]), np.sin(angles[1])
    np.testing.assert_allclose(prior.covariances()[1],
                               [[0.25 * c * c + 0.01 * s * s, (0.25 - 0.01) * c * s],
                                [(0.25 - 0.01) * c * s, 0.25 * s * s + 0.01 * c * c]])


def test_mixture10_sampling_is_the_documented_draws_from_the_given_rng():
    codes, labels = Mixture10().sample_with_labels(500, np.random.RandomState(4))
    rng = np.random.RandomState(4)
    expected_labels = rng.randint(0, 10, 500)
    a = rng.standard_normal((500, 2))
    theta = 2 * np.pi * expected_labels / 10
    x = 1.4 * np.cos(theta) + 0.5 * a[:, 0] * np.cos(theta) - 0.1 * a[:, 1] * np.sin(theta)
    y = 1.4 * np.sin(theta) + 0.5 * a[:, 0] * np.sin(theta) + 0.1 * a[:, 1] * np.cos(theta)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(codes, np.c_[x, y], rtol=1e-6, atol=1e-6)
    assert codes.dtype == np.float32 and np.bincount(labels, minlength=10).min() > 30
    again = Mixture10().sample(500, np.random.RandomState(4))
    np.testing.assert_array_equal(again, codes)  # seeded: the same codes


def test_the_normal_prior_and_the_one_line_errors():
    np.testing.assert_array_equal(Normal(3).sample(4, np.random.RandomState(1)),
                                  np.random.RandomState(1).standard_normal((4, 3))
                                  .astype(np.float32))
    assert make_prior("normal", 5).dim == 5 and make_prior("mixture10", 2).dim == 2
    with pytest.raises(ValueError, match="mixture10 prior is 2-D: latent_dim must be 2, got 3"):
        make_prior("mixture10", 3)
    with pytest.raises(ValueError, match="unknown prior 'ring'"):
        make_prior("ring", 2)
    with pytest.raises(ValueError, match=r"expected 3 labels in 0..9, got 3 from 0 to 10"):
        Mixture10().sample(3, np.random.RandomState(0), labels=[0, 1, 10])
    with pytest.raises(ValueError, match="no components to condition on labels"):
        Normal(2).sample(2, np.random.RandomState(0), labels=[0, 1])


# ---- D on codes, by hand -----------------------------------------------------------------
class Linear2(nn.Module):
    """D(z) = z . w + b with w = (1, -2), b = 0.5."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.layer.weight = nn.Parameter(np.array([[1.0], [-2.0]], np.float32))
        self.layer.bias = nn.Parameter(np.array([[0.5]], np.float32))

    def forward(self, z):
        return ndl.ops.reshape(self.layer(z), (z.shape[0],))


def softplus(x):
    return np.logaddexp(0, x)


def test_d_on_codes_losses_and_the_encoders_gradient_by_hand():
    D = Linear2()
    adversarial = Adversarial(D, NonSaturating(), ndl.optim.SGD(D.parameters(), lr=0.1))
    real = ndl.Tensor(np.array([[1, 0], [0, 1]], np.float32), requires_grad=False)  # prior
    fake = ndl.Tensor(np.array([[2, 1]], np.float32), requires_grad=True)          # codes
    # D(real) = 1 + 0.5 = 1.5 and -2 + 0.5 = -1.5; D(fake) = 2 - 2 + 0.5 = 0.5
    loss, real_scores, fake_scores, _ = adversarial.discriminator_loss(real, fake)
    np.testing.assert_allclose(real_scores.numpy(), [1.5, -1.5])
    np.testing.assert_allclose(fake_scores.numpy(), [0.5])
    # -log sigmoid(r) = softplus(-r) on the prior, -log(1 - sigmoid(f)) = softplus(f) on codes
    d_loss = (softplus(-1.5) + softplus(1.5)) / 2 + softplus(0.5)
    assert float(loss.numpy()) == pytest.approx(d_loss, rel=1e-6)
    figures = adversarial.discriminator_step(real, fake)
    assert figures["d_loss"] == pytest.approx(d_loss, rel=1e-6)
    assert fake.grad is None  # D's step left the codes alone
    # D's SGD step: dL/dw = -sigmoid(-r) r-codes averaged + sigmoid(f) f-codes
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    grad_w = (-sig(-1.5) * np.array([1, 0]) - sig(1.5) * np.array([0, 1])) / 2 + \
        sig(0.5) * np.array([2, 1])
    grad_b = (-sig(-1.5) - sig(1.5)) / 2 + sig(0.5)
    w = np.array([1.0, -2.0]) - 0.1 * grad_w
    b = 0.5 - 0.1 * grad_b
    np.testing.assert_allclose(D.layer.weight.numpy()[:, 0], w, rtol=1e-5)
    np.testing.assert_allclose(D.layer.bias.numpy()[0, 0], b, rtol=1e-5)
    # the encoder's loss softplus(-D(code)) and its gradient -sigmoid(-D(code)) w at the code
    g = adversarial.generator_loss(fake)
    score = 2 * w[0] + 1 * w[1] + b
    assert float(g.numpy()) == pytest.approx(softplus(-score), rel=1e-5)
    g.backward()
    np.testing.assert_allclose(fake.grad.numpy()[0], -sig(-score) * w, rtol=1e-5)


# ---- the recipe --------------------------------------------------------------------------
def tiny_aae(seed=0, balance=None, ae_lr=1e-3, labelled=False):
    np.random.seed(seed)
    prior = Mixture10()
    encoder = Encoder(prior.dim, width=2, hidden=8)
    decoder = Decoder(prior.dim, width=2, hidden=8)
    D = LabelledCodeCritic(prior.dim, 10, hidden=8, layers=2) if labelled else \
        MLPCritic(prior.dim, hidden=8, layers=2)
    adversarial = Adversarial(D, NonSaturating(), ndl.optim.Adam(D.parameters(), lr=1e-3))
    optimizer = ndl.optim.SGD(encoder.parameters() + decoder.parameters(), lr=ae_lr)
    encoder_optimizer = ndl.optim.Adam(encoder.parameters(), lr=1e-3)
    test = np.random.RandomState(seed + 1).uniform(-1, 1, (6, 1, 28, 28)).astype(np.float32)
    return AAERecipe(encoder, decoder, optimizer, encoder_optimizer, adversarial, prior, test,
                     np.arange(6), balance=balance, num_samples=2, test_count=6,
                     labelled=labelled)


def mlp_scores(D, z):
    """MLPCritic's forward in NumPy from its weights (ReLU hidden layers, linear head)."""
    state = D.state_dict()
    layers = sorted({k.rsplit(".", 1)[0] for k in state if k.endswith("weight")},
                    key=lambda k: int(k.split(".")[-1]))
    h = z.astype(np.float64)
    for i, name in enumerate(layers):
        h = h @ state[f"{name}.weight"] + state[f"{name}.bias"]
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h[:, 0]


@pytest.mark.parametrize("labelled", [False, True], ids=["plain", "label_prior"])
def test_one_step_runs_the_reconstruction_then_the_regularisation_phase(labelled):
    """With the autoencoder's SGD at lr 0 the reconstruction phase leaves the codes as they
    were, so D's loss is D0's on (prior, E(x)) and the encoder's is D1's on E(x); with
    labels, the prior samples come from the labels' components and D sees the one-hot
    labels beside both."""
    recipe = tiny_aae(ae_lr=0.0, labelled=labelled)
    x = np.random.RandomState(3).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    digits = np.array([7, 0, 7, 3])
    E = recipe.encoder
    D = recipe.adversarial.discriminator.critic if labelled else \
        recipe.adversarial.discriminator
    with ndl.no_grad():
        codes = E(ndl.Tensor(x, requires_grad=False)).numpy()
        logits = recipe.decoder.logits(ndl.Tensor(codes, requires_grad=False)).numpy()
    state = np.random.get_state()
    prior = Mixture10().sample(4, np.random, labels=digits if labelled else None)
    np.random.set_state(state)  # (the step's draw)
    if labelled:
        one_hot = np.eye(10)[digits]
        prior, codes_seen = np.c_[prior, one_hot], np.c_[codes, one_hot]
    else:
        codes_seen = codes
    d0 = {k: v.copy() for k, v in D.state_dict().items()}
    e0 = {k: v.copy() for k, v in E.state_dict().items()}
    figures = recipe.step((x, digits) if labelled else (x,), 0)
    y = (x + 1) / 2
    rec = (softplus(logits) - y * logits).reshape(4, -1).sum(1).mean()
    assert figures["reconstruction"] == pytest.approx(rec, rel=1e-4)
    fake1 = mlp_scores(D, codes_seen)  # D after its step: the encoder's step leaves D as it is
    assert figures["g_loss"] == pytest.approx(softplus(-fake1).mean(), rel=1e-4)
    after = E.state_dict()
    assert any(not np.array_equal(e0[k], after[k]) for k in e0)  # the encoder's own step
    D.load_state_dict(d0)
    real0, fake0 = mlp_scores(D, prior), mlp_scores(D, codes_seen)
    assert figures["d_loss"] == pytest.approx(softplus(-real0).mean() + softplus(fake0).mean(),
                                              rel=1e-4)
    assert figures["d_real"] == pytest.approx((1 / (1 + np.exp(-real0))).mean(), rel=1e-4)
    assert figures["d_fake"] == pytest.approx((1 / (1 + np.exp(-fake0))).mean(), rel=1e-4)
    assert set(recipe.components()) == {"encoder", "decoder", "optimizer", "adversarial",
                                        "encoder_optimizer"}


def test_the_adaptive_weight_joins_the_reconstruction_step_after_its_warm_up():
    recipe = tiny_aae(balance=AdaptiveWeight(base_weight=1.0, warmup_steps=2), ae_lr=1e-2)
    rng = np.random.RandomState(5)
    D = recipe.adversarial.discriminator
    before = {k: v.copy() for k, v in D.state_dict().items()}
    for step in range(2):
        figures = recipe.step((rng.uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32),), step)
        assert set(figures) == {"reconstruction", "ae_grad_norm"}
    assert all(np.array_equal(before[k], v) for k, v in D.state_dict().items())
    figures = recipe.step((rng.uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32),), 2)
    assert figures["adaptive_weight"] == recipe.balance.last_weight > 0
    assert {"d_loss", "g_loss"} <= set(figures)
    assert "encoder_optimizer" not in recipe.components()


def test_the_picture_draws_no_global_random_numbers_and_shapes_are_checked():
    recipe = tiny_aae()
    state = np.random.get_state()
    grid = recipe.sample()
    recipe.evaluate()
    after = np.random.get_state()
    assert after[2] == state[2] and np.array_equal(after[1], state[1])
    assert grid.rows == 3 and grid.images.shape == (6, 1, 28, 28)
    with pytest.raises(ValueError, match=r"the prior \(Normal\(dim=3\), 3-D\) must agree"):
        AAERecipe(recipe.encoder, recipe.decoder, recipe.optimizer, recipe.encoder_optimizer,
                  recipe.adversarial, Normal(3), recipe.test_images, recipe.test_labels)


# ---- the app -----------------------------------------------------------------------------
TINY = ["--width", "2", "--hidden", "8", "--d_hidden", "8", "--batch_size", "4",
        "--num_samples", "2", "--log_every", "1", "--checkpoint_every", "3", "--no_progress"]


@pytest.mark.parametrize("extra", [["--label_prior"],
                                   ["--prior", "normal", "--latent_dim", "3",
                                    "--adaptive_weight", "--warmup_steps", "1"]],
                         ids=["mixture10_labels", "normal_adaptive"])
def test_the_dry_run_writes_the_run_folder_and_the_pictures(tmp_path, monkeypatch, extra):
    from gan import plots
    titles, save_figure = {}, plots.save_figure

    def recording(figure, path):
        titles[os.path.basename(path)] = figure.axes[0].get_title()
        return save_figure(figure, path)
    monkeypatch.setattr(plots, "save_figure", recording)
    run = tmp_path / "dry"
    record = train_aae.main(["--dry_run", "--out_dir", str(run), *TINY, *extra])
    per_digit = "a component per digit" in titles["latent.png"]
    assert per_digit == ("--label_prior" in extra), titles["latent.png"]
    assert record["step"] == 3 and "test_mse" in record and "fid" not in record
    assert {"reconstruction", "d_loss", "g_loss"} <= set(record)
    for name in ("report.html", "run.json", "losses.png", "latent.png", "reconstructions.png",
                 "prior_samples.png", "samples/step_00000003.png",
                 "checkpoints/step_00000003.safetensors"):
        assert (run / name).exists(), name


@pytest.mark.parametrize("argv, message", [
    (["--latent_dim", "3"], "--prior mixture10 is 2-D: --latent_dim must be 2, got 3"),
    (["--model", "vae", "--prior", "mixture10"], "the VAE's prior is the standard normal"),
    (["--model", "vae", "--adaptive_weight"], "--adaptive_weight: options of --model aae"),
    (["--beta", "2"], "--beta weights the VAE's KL term"),
    (["--warmup_steps", "5"], "--warmup_steps is the warm-up of --adaptive_weight"),
    (["--objective", "wasserstein"], "invalid choice: 'wasserstein'"),
    (["--label_prior", "--prior", "normal"], "--label_prior draws from the label's mixture"),
    (["--model", "vae", "--label_prior"], "--label_prior: options of --model aae"),
    (["--latent_dim", "0"], "must be an integer >= 1, got 0"),
])
def test_option_mistakes_are_one_line_errors_before_anything_is_read(tmp_path, capsys, argv,
                                                                     message):
    with pytest.raises(SystemExit) as stop:
        train_aae.main(["--out_dir", str(tmp_path / "run"), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra", [["--eval_samples", "40", "--label_prior"],
                                   ["--no-evaluate", "--adaptive_weight", "--warmup_steps",
                                    "2"]], ids=["scored", "adaptive"])
def test_an_interrupted_aae_run_resumes_bit_for_bit(tmp_path, extra):
    """Stop after 3 steps, resume to 8 (one epoch of 32 digits): every weight, optimizer
    moment and logged figure equals an uninterrupted run's."""
    base = ["--data_dir", tiny_mnist(tmp_path), "--limit", "32", *TINY, *extra]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_aae.main(base + ["--out_dir", str(straight), "--epochs", "1"])
    train_aae.main(base + ["--out_dir", str(split), "--max_steps", "3"])
    record = train_aae.main(["--resume", "--out_dir", str(split), "--epochs", "1",
                             "--no_progress"])  # every other option from run.json
    assert record["step"] == 8
    expected, got = final_state(straight), final_state(split)
    assert expected.keys() == got.keys()
    assert any(k.startswith("adversarial.") for k in got)
    assert any(k.startswith("encoder_optimizer.") for k in got) == ("--adaptive_weight"
                                                                    not in extra)
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)

    def logged(run):
        return [{k: v for k, v in json.loads(line).items() if k != "time"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in logged(split) if r["kind"] == "interval" or r["step"] == 8] == \
        [r for r in logged(straight) if r["kind"] == "interval" or r["step"] == 8]
    if "--no-evaluate" not in extra:
        assert {"fid", "kid", "precision", "recall", "test_mse"} <= set(record)
