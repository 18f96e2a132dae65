"""The VAE (gan.recipes.aae.VAERecipe): the KL term, the reparameterisation and the
reconstruction losses against NumPy (values and gradients), one step's figures recomputed by
hand, the app's dry run and an interrupted run resumed bit for bit."""
import json

import numpy as np
import pytest

import needle as ndl
from apps import train_aae
from gan.models.autoencoder import Decoder, Encoder
from gan.priors import Normal
from gan.recipes.aae import VAERecipe, gaussian_kl, reconstruction_loss, reparameterise
from tests.gan.test_kill_resume import final_state
from tests.gan.test_pix2pix import tiny_mnist

pytestmark = pytest.mark.nd_only  # the GAN apps run on the NDArray flavour


def tensor(array):
    return ndl.Tensor(np.asarray(array, np.float32), requires_grad=True)


def test_the_kl_term_and_its_gradient_against_numpy():
    rng = np.random.RandomState(0)
    mean, log_var = rng.randn(5, 3), rng.randn(5, 3) * 0.7
    m, lv = tensor(mean), tensor(log_var)
    kl = gaussian_kl(m, lv)
    kl.backward()
    # KL(N(mu, S) || N(0, I)) = 1/2 (tr S + mu^T mu - k - log det S), row by row, averaged
    expected = []
    for mu, s in zip(mean, np.exp(log_var)):
        cov = np.diag(s)
        expected.append(0.5 * (np.trace(cov) + mu @ mu - len(mu) - np.linalg.slogdet(cov)[1]))
    assert float(kl.numpy()) == pytest.approx(np.mean(expected), rel=1e-5)
    np.testing.assert_allclose(m.grad.numpy(), mean / 5, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lv.grad.numpy(), 0.5 * (np.exp(log_var) - 1) / 5, rtol=1e-5,
                               atol=1e-7)
    # zero exactly at the prior itself
    assert float(gaussian_kl(tensor(np.zeros((2, 4))), tensor(np.zeros((2, 4)))).numpy()) == 0


def test_the_reparameterised_sample_and_its_gradients_against_numpy():
    rng = np.random.RandomState(1)
    mean, log_var, eps, w = rng.randn(4, 2), rng.randn(4, 2), rng.randn(4, 2), rng.randn(4, 2)
    m, lv = tensor(mean), tensor(log_var)
    z = reparameterise(m, lv, ndl.Tensor(eps.astype(np.float32), requires_grad=False))
    np.testing.assert_allclose(z.numpy(), mean + np.exp(log_var / 2) * eps, rtol=1e-5,
                               atol=1e-6)
    (z * ndl.Tensor(w.astype(np.float32), requires_grad=False)).sum().backward()
    np.testing.assert_allclose(m.grad.numpy(), w, rtol=1e-6)
    np.testing.assert_allclose(lv.grad.numpy(), 0.5 * np.exp(log_var / 2) * eps * w,
                               rtol=1e-5, atol=1e-6)


def test_the_reconstruction_losses_are_per_image_sums_against_numpy():
    rng = np.random.RandomState(2)
    logits = rng.randn(3, 1, 28, 28) * 3
    images = rng.uniform(-1, 1, (3, 1, 28, 28))
    y = (images + 1) / 2
    bce = (np.logaddexp(0, logits) - y * logits).reshape(3, -1).sum(1).mean()
    mse = ((np.tanh(logits / 2) - images) ** 2).reshape(3, -1).sum(1).mean()
    for kind, expected in (("bce", bce), ("mse", mse)):
        got = reconstruction_loss(tensor(logits), tensor(images), kind)
        assert float(got.numpy()) == pytest.approx(expected, rel=1e-5), kind
    # the decoder's image is 2 sigmoid(l) - 1: the BCE's target scale
    np.testing.assert_allclose(np.tanh(logits / 2), 2 / (1 + np.exp(-logits)) - 1, atol=1e-12)
    with pytest.raises(ValueError, match="kind must be one of bce, mse, got 'l1'"):
        reconstruction_loss(tensor(logits), tensor(images), "l1")


def tiny_vae(seed=0):
    np.random.seed(seed)
    encoder = Encoder(3, width=2, hidden=8, variational=True)
    decoder = Decoder(3, width=2, hidden=8)
    optimizer = ndl.optim.Adam(encoder.parameters() + decoder.parameters(), lr=1e-3)
    rng = np.random.RandomState(seed + 1)
    test = rng.uniform(-1, 1, (6, 1, 28, 28)).astype(np.float32)
    return VAERecipe(encoder, decoder, optimizer, Normal(3), test, np.arange(6) % 10,
                     num_samples=2, test_count=6)


def test_one_step_is_the_negative_elbo_with_eps_from_the_global_rng():
    recipe = tiny_vae()
    x = np.random.RandomState(3).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    with ndl.no_grad():
        mean, log_var = (t.numpy() for t in recipe.encoder(ndl.Tensor(x, requires_grad=False)))
    state = np.random.get_state()
    eps = np.random.standard_normal(mean.shape).astype(np.float32)
    np.random.set_state(state)
    z = (mean + np.exp(log_var / 2) * eps).astype(np.float32)
    with ndl.no_grad():
        logits = recipe.decoder.logits(ndl.Tensor(z, requires_grad=False)).numpy()
    y = (x + 1) / 2
    rec = (np.logaddexp(0, logits) - y * logits).reshape(4, -1).sum(1).mean()
    kl = (0.5 * (mean ** 2 + np.exp(log_var) - 1 - log_var).sum(1)).mean()
    before = {k: v.copy() for k, v in recipe.encoder.state_dict().items()}
    figures = recipe.step((x,), 0)
    assert figures["reconstruction"] == pytest.approx(rec, rel=1e-4)
    assert figures["kl"] == pytest.approx(kl, rel=1e-4)
    assert figures["loss"] == pytest.approx(rec + kl, rel=1e-4)
    after = recipe.encoder.state_dict()
    assert all(not np.array_equal(before[k], after[k]) for k in before)  # both heads learn
    assert set(recipe.components()) == {"encoder", "decoder", "optimizer"}


def test_the_picture_and_the_scores_draw_no_global_random_numbers():
    recipe = tiny_vae()
    state = np.random.get_state()
    grid = recipe.sample()
    scores = recipe.evaluate()
    after = np.random.get_state()
    assert after[2] == state[2] and np.array_equal(after[1], state[1])
    assert grid.rows == 3 and grid.images.shape == (6, 1, 28, 28)
    assert grid.row_labels == ["original", "reconstruction", "prior sample"]
    np.testing.assert_array_equal(grid.images[:2], recipe.test_images[:2])
    assert set(scores) == {"test_mse"} and 0 < scores["test_mse"] < 4
    np.testing.assert_array_equal(recipe.sample().images, grid.images)  # the same codes


def test_a_vae_needs_a_variational_encoder_and_the_normal_prior():
    recipe = tiny_vae()
    plain = Encoder(3, width=2, hidden=8)
    with pytest.raises(ValueError, match="the encoder must be variational"):
        VAERecipe(plain, recipe.decoder, recipe.optimizer, Normal(3), recipe.test_images,
                  recipe.test_labels)
    with pytest.raises(ValueError, match=r"the prior \(Normal\(dim=2\), 2-D\) must agree"):
        VAERecipe(recipe.encoder, recipe.decoder, recipe.optimizer, Normal(2),
                  recipe.test_images, recipe.test_labels)


TINY = ["--model", "vae", "--prior", "normal", "--latent_dim", "3", "--width", "2",
        "--hidden", "8", "--batch_size", "4", "--num_samples", "2", "--log_every", "1",
        "--checkpoint_every", "3", "--no_progress"]


def test_the_dry_run_writes_the_run_folder_and_the_pictures(tmp_path):
    run = tmp_path / "dry"
    record = train_aae.main(["--dry_run", "--out_dir", str(run), *TINY])
    assert record["step"] == 3 and "test_mse" in record and "fid" not in record
    for name in ("report.html", "run.json", "losses.png", "latent.png", "reconstructions.png",
                 "prior_samples.png", "samples/step_00000003.png",
                 "checkpoints/step_00000003.safetensors"):
        assert (run / name).exists(), name
    assert {"reconstruction", "kl", "loss"} <= set(record)


def test_an_interrupted_vae_run_resumes_bit_for_bit(tmp_path):
    base = ["--data_dir", tiny_mnist(tmp_path), "--limit", "32", "--no-evaluate", *TINY]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_aae.main(base + ["--out_dir", str(straight), "--epochs", "1"])
    train_aae.main(base + ["--out_dir", str(split), "--max_steps", "3"])
    record = train_aae.main(["--resume", "--out_dir", str(split), "--epochs", "1",
                             "--no_progress"])  # every other option from run.json
    assert record["step"] == 8
    expected, got = final_state(straight), final_state(split)
    assert expected.keys() == got.keys() and any(k.startswith("encoder.log_variance")
                                                 for k in got)
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)

    def logged(run):
        return [{k: v for k, v in json.loads(line).items() if k != "time"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in logged(split) if r["kind"] == "interval"] == \
        [r for r in logged(straight) if r["kind"] == "interval"]
