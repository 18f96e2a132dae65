"""apps.probe_discriminator: the pooling against PyTorch, the logistic loss and gradient
against PyTorch's autograd, the classifier on a small separable problem, the class-balanced
draws, D's features against a direct forward, and the app on a tiny train_dcgan run."""
import json
import shutil

import numpy as np
import pytest

import needle as ndl
from apps import probe_discriminator as probe_app
from apps import train_dcgan
from apps.probe_discriminator import (adaptive_max_pool, balanced_subset, choose_weight_decay,
                                      discriminator_features, fit_logistic, logistic_loss,
                                      predict_logistic)
from gan.models.dcgan import Discriminator
from tests.gan.test_dann_app import write_tiny_mnist


@pytest.mark.parametrize("shape, grid", [((2, 3, 14, 14), 4), ((2, 3, 7, 7), 4),
                                         ((1, 2, 4, 4), 4), ((1, 1, 9, 6), 4)])
def test_adaptive_max_pool_is_torchs(shape, grid):
    torch = pytest.importorskip("torch")
    maps = np.random.RandomState(0).randn(*shape).astype(np.float32)
    expected = torch.nn.functional.adaptive_max_pool2d(torch.tensor(maps), grid).numpy()
    np.testing.assert_array_equal(adaptive_max_pool(maps, grid), expected)


def test_the_logistic_loss_and_gradient_are_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(1)
    X, y = rng.randn(7, 5), rng.randint(0, 4, 7)
    W, b = rng.randn(5, 4), rng.randn(4)
    loss, dW, db = logistic_loss(W, b, X, y, 0.3)
    tW, tb = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(torch.tensor(X) @ tW + tb, torch.tensor(y)) \
        + 0.3 / 2 * (tW ** 2).sum()
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(dW, tW.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def blobs(per_class, seed, classes=3, dims=4):
    """Three well-separated Gaussian blobs (linearly separable) with an offset and scale per
    dimension (so standardisation matters)."""
    rng = np.random.RandomState(seed)
    centres = np.eye(classes, dims) * 6
    y = np.repeat(np.arange(classes), per_class)
    X = centres[y] + rng.randn(len(y), dims) * 0.5
    return X * np.array([1, 10, 0.1, 3])[:dims] + 5, y


def test_the_probe_separates_a_separable_problem_at_its_optimum():
    X, y = blobs(20, 0)
    model = fit_logistic(X, y, weight_decay=0.01, classes=3)
    X_test, y_test = blobs(50, 1)
    assert np.mean(predict_logistic(model, X_test) == y_test) == 1.0
    W, b, standardise = model
    _, dW, db = logistic_loss(W, b, standardise(X), y, 0.01)  # the optimum: gradient 0
    assert np.abs(dW).max() < 1e-4 and np.abs(db).max() < 1e-4
    norms = [np.linalg.norm(fit_logistic(X, y, wd, classes=3)[0]) for wd in (0.01, 0.1, 1.0)]
    assert norms[0] > norms[1] > norms[2]  # weight decay shrinks the weights


def test_cross_validation_picks_the_weight_decay_of_the_best_held_out_accuracy():
    """Few samples, one informative dimension among many noisy ones: strong weight decay
    generalises better; the choice is the best over four folds (four digits of each class)
    counted here by hand."""
    rng = np.random.RandomState(2)
    y = np.repeat(np.arange(10), 4)
    X = np.concatenate([y[:, None] + rng.randn(40, 1) * 0.3, rng.randn(40, 60) * 3], axis=1)
    grid = [1e-4, 30.0]
    fold = np.tile(np.arange(4), 10)  # each class's four members dealt round four folds
    correct = []
    for weight_decay in grid:
        hits = 0
        for k in range(4):
            model = fit_logistic(X[fold != k], y[fold != k], weight_decay, max_iter=200)
            hits += int((predict_logistic(model, X[fold == k]) == y[fold == k]).sum())
        correct.append(hits)
    assert correct[0] != correct[1]
    assert choose_weight_decay(X, y, grid, max_iter=200) == grid[int(np.argmax(correct))]
    assert choose_weight_decay(X, y, [0.5]) == 0.5
    with pytest.raises(ValueError, match="needs 2 or more labelled digits of each class, got 1"):
        choose_weight_decay(X[::4], y[::4], grid)


def test_balanced_subsets_take_the_same_number_of_each_digit():
    labels = np.random.RandomState(0).randint(0, 10, 500)
    index = balanced_subset(labels, 100, np.random.RandomState(4))
    assert len(np.unique(index)) == 100
    assert np.bincount(labels[index], minlength=10).tolist() == [10] * 10
    np.testing.assert_array_equal(index, balanced_subset(labels, 100, np.random.RandomState(4)))
    with pytest.raises(ValueError, match="digits of class"):
        balanced_subset(labels[:20], 100, np.random.RandomState(4))


def test_discriminator_features_are_every_leaky_relu_pooled():
    np.random.seed(0)
    D = Discriminator(channels=1, image_size=28, width=2)
    images = np.random.RandomState(5).uniform(-1, 1, (5, 1, 28, 28)).astype(np.float32)
    D.train()
    features = discriminator_features(D, images, "all", 4, batch_size=2)
    assert D.training  # its mode is restored
    D.eval()
    modules = D.features.modules  # conv, lrelu, conv, bn, lrelu
    with ndl.no_grad():
        first = modules[1](modules[0](ndl.Tensor(images))).numpy()
        last = D.features(ndl.Tensor(images)).numpy()
    expected = np.concatenate([adaptive_max_pool(first, 4).reshape(5, -1),
                               adaptive_max_pool(last, 4).reshape(5, -1)], axis=1)
    assert features.shape == (5, 2 * 16 + 4 * 16)
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    whole = discriminator_features(D, images, "last", 0)
    np.testing.assert_allclose(whole, last.reshape(5, -1), rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A two-step train_dcgan run on 100 MNIST digits, and the data folder."""
    root = tmp_path_factory.mktemp("probe")
    data_dir = write_tiny_mnist(root / "data", count=100)
    out = root / "dcgan"
    train_dcgan.main(["--data_dir", data_dir, "--out_dir", str(out), "--limit", "32",
                      "--batch_size", "16", "--width", "2", "--latent_dim", "4",
                      "--max_steps", "2", "--no_progress"])
    return out, data_dir


def test_the_app_probes_a_run_and_writes_probe_json(tiny_run, capsys):
    run, data_dir = tiny_run
    argv = ["--run", str(run), "--data_dir", data_dir, "--labels", "20", "30", "--draws", "2",
            "--test_count", "30", "--weight_decay", "0.1", "1", "--max_iter", "50"]
    report = probe_app.main(argv)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["labels", "D", "features", "pixels"]
    assert [line.split()[0] for line in lines[2:4]] == ["20", "30"]
    assert report["dims"] == {"features": 2 * 16 + 4 * 16, "pixels": 784}
    for name in ("features", "pixels"):
        for count in ("20", "30"):
            result = report["results"][name][count]
            assert len(result["accuracies"]) == 2 and set(result["weight_decays"]) <= {0.1, 1}
            assert result["mean"] == pytest.approx(np.mean(result["accuracies"]))
            hits = np.array(result["accuracies"]) * 30  # a share of the 30 test digits
            np.testing.assert_allclose(hits, np.round(hits), atol=1e-9)
    assert json.loads((run / "probe.json").read_text())["results"] == report["results"]
    again = probe_app.main(argv + ["--json"])
    assert json.loads(capsys.readouterr().out) == again
    assert again["results"] == report["results"]  # the draws are seeded


def test_a_wrong_run_folder_is_one_line(tiny_run, tmp_path):
    run, data_dir = tiny_run
    with pytest.raises(SystemExit) as stop:
        probe_app.main(["--run", str(tmp_path / "none"), "--data_dir", data_dir])
    assert str(stop.value) == f"probe_discriminator: {tmp_path / 'none'} is neither a run " \
                              "folder nor a checkpoint file"
    other = tmp_path / "cgan"
    shutil.copytree(run, other)
    manifest = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps(dict(manifest, app="train_cgan")))
    with pytest.raises(SystemExit) as stop:
        probe_app.main(["--run", str(other), "--data_dir", data_dir])
    message = str(stop.value)
    assert "is a train_cgan run; the probe takes the image discriminator" in message
    assert "\n" not in message
