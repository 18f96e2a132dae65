"""Conditional DCGAN: shapes, named label errors, the projection term and its gradients."""
import json
import os

import numpy as np
import pytest

import needle as ndl
from apps import train_cgan
from gan import Adversarial, LabelError
from gan.models import ConditionalDiscriminator, ConditionalGenerator
from gan.objectives import Wasserstein
from gan.penalties import GradientPenalty

WIDTH = 8  # small models: these tests check wiring, not capacity


def _labels(values):
    return ndl.Tensor(np.asarray(values, dtype=np.float32), requires_grad=False)


@pytest.fixture
def models():
    np.random.seed(0)
    return (ConditionalGenerator(num_classes=10, latent_dim=16, width=WIDTH),
            ConditionalDiscriminator(num_classes=10, width=WIDTH))


@pytest.mark.parametrize("image_size", [28, 32])
def test_shapes(image_size):
    np.random.seed(0)
    G = ConditionalGenerator(num_classes=4, latent_dim=16, channels=3, image_size=image_size,
                             width=WIDTH)
    D = ConditionalDiscriminator(num_classes=4, channels=3, image_size=image_size, width=WIDTH)
    y = _labels([0, 1, 2, 3, 3])
    x = G(ndl.init.randn(5, 16), y)
    assert x.shape == (5, 3, image_size, image_size)
    assert D(x, y).shape == (5,)
    assert G.embedding.shape == (4, 16)
    assert D.embedding.shape == (4, D.feature_dim)


def test_integer_labels_work(models):
    G, D = models
    y = ndl.Tensor(np.array([0, 9, 3], dtype=np.int64), requires_grad=False)
    assert D(G(ndl.init.randn(3, 16), y), y).shape == (3,)
    assert D(G(ndl.init.randn(3, 16), [0, 9, 3]), np.array([0, 9, 3])).shape == (3,)


@pytest.mark.parametrize("which", ["ConditionalGenerator", "ConditionalDiscriminator"])
def test_missing_labels_name_the_model(models, which):
    G, D = models
    z, x = ndl.init.randn(2, 16), ndl.init.randn(2, 1, 28, 28)
    call = (lambda: G(z)) if which == "ConditionalGenerator" else (lambda: D(x))
    with pytest.raises(LabelError, match=f"{which}: labels are required"):  # a ValueError
        call()


@pytest.mark.parametrize("bad, shown", [([0, 10, 3], r"\[10\.0\]"),
                                        ([-1, 2, 3], r"\[-1\.0\]"),
                                        ([0.5, 2, 3], r"\[0\.5\]"),
                                        ([12, -3, 3], r"\[-3\.0, 12\.0\]")])
def test_out_of_range_labels_are_named(models, bad, shown):
    G, D = models
    z, x = ndl.init.randn(3, 16), ndl.init.randn(3, 1, 28, 28)
    with pytest.raises(ValueError, match=r"ConditionalGenerator: .*\[0, 10\).*" + shown):
        G(z, _labels(bad))
    with pytest.raises(ValueError, match=r"ConditionalDiscriminator: .*\[0, 10\).*" + shown):
        D(x, _labels(bad))


def test_label_count_must_match_batch(models):
    G, D = models
    with pytest.raises(ValueError, match=r"ConditionalDiscriminator: expected labels of "
                                         r"shape \(3,\), got \(2,\)"):
        D(ndl.init.randn(3, 1, 28, 28), _labels([0, 1]))
    with pytest.raises(ValueError, match="ConditionalGenerator: expected z"):
        G(ndl.init.randn(3, 7), _labels([0, 1, 2]))


def test_logits_are_head_plus_projection(models):
    _, D = models
    D.eval()  # batch norm on running statistics: features do not depend on the batch
    x, y = ndl.init.randn(4, 1, 28, 28), np.array([2, 0, 2, 7])
    features = D.trunk.features(x)
    head = D.trunk.head(features).numpy().reshape(4)
    phi = features.numpy().reshape(4, -1)
    expected = head + (D.embedding.numpy()[y] * phi).sum(axis=1)
    np.testing.assert_allclose(D(x, _labels(y)).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_projection_gradient_reaches_the_embedding_rows_of_the_batch(models):
    _, D = models
    D.eval()
    x, y = ndl.init.randn(4, 1, 28, 28), np.array([2, 0, 2, 7])
    ndl.ops.summation(D(x, _labels(y))).backward()
    gV = D.embedding.grad.numpy()
    phi = D.trunk.features(x).numpy().reshape(4, -1)
    expected = np.zeros_like(gV)
    np.add.at(expected, y, phi)  # d sum(logits) / dV[c] = sum of phi(x_i) with y_i = c
    np.testing.assert_allclose(gV, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(gV[[2, 0, 7]]).sum(axis=1).min() > 0
    assert not np.any(gV[[1, 3, 4, 5, 6, 8, 9]])


def test_generator_embedding_gets_gradients(models):
    G, D = models
    y = _labels([1, 1, 4])
    ndl.ops.summation(D(G(ndl.init.randn(3, 16), y), y)).backward()
    gE = G.embedding.grad.numpy()
    assert np.abs(gE[[1, 4]]).sum(axis=1).min() > 0
    assert not np.any(np.delete(gE, [1, 4], axis=0))


def test_conditional_critic_with_gradient_penalty():
    """The condition reaches D inside the penalty's double backward too."""
    np.random.seed(0)
    G = ConditionalGenerator(num_classes=3, latent_dim=8, width=WIDTH)
    D = ConditionalDiscriminator(num_classes=3, width=WIDTH, norm="none")
    adv = Adversarial(D, Wasserstein(), ndl.optim.Adam(D.parameters(), lr=1e-4),
                      penalties=[GradientPenalty(10)])
    y = _labels([0, 1, 2, 1])
    before = D.embedding.numpy().copy()
    figures = adv.discriminator_step(ndl.init.randn(4, 1, 28, 28), G(ndl.init.randn(4, 8), y), y)
    assert np.isfinite(figures["penalty_GradientPenalty"])
    changed = np.abs(D.embedding.numpy() - before).sum(axis=1) > 0
    assert changed.tolist() == [True, True, True]


def test_train_cgan_dry_run_writes_outputs(tmp_path):
    out = tmp_path / "cgan"
    record = train_cgan.main(["--dry_run", "--out_dir", str(out), "--no_progress",
                              "--width", "8", "--batch_size", "16", "--num_samples", "30"])
    assert record["step"] == 3 and np.isfinite(record["d_loss"])
    assert (out / "samples" / "step_00000003.png").exists()
    assert (out / "checkpoints" / "step_00000003.safetensors").exists()
    assert (out / "losses.png").exists()
    info = json.loads((out / "run.json").read_text())
    assert info["app"] == "train_cgan" and info["args"]["num_classes"] == 10
    from PIL import Image
    with Image.open(out / "samples" / "step_00000003.png") as grid:
        size, text = grid.size, dict(grid.text)
    # one row per digit: 10 rows of 3 tiles, 28 px + 2 px padding each, scaled 2x, plus the
    # title above and the digit labels on the left
    assert size[0] > 2 * (3 * 30 + 2) and size[1] > 2 * (10 * 30 + 2)
    assert size[1] < 2 * (11 * 30 + 2)  # 10 rows, not 11
    assert text["title"] == "train_cgan  step 3  epoch 1" and text["step"] == "3"
    assert os.path.getsize(out / "metrics.jsonl") > 0
