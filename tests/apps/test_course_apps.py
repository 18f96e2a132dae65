"""The course's needle-based apps: apps/simple_ml.py (hw1 + hw4), apps/mlp_resnet.py (hw2),
apps/models.py (hw4), checked against COURSE_API.md section 9.

Sizes are kept small (MNIST slices written to tmp_path in IDX format, a generated PTB-style
corpus, random CIFAR-shaped images) so the whole file runs in seconds.
"""
import gzip
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from apps import mlp_resnet, models
from apps import simple_ml as apps_simple_ml
from needle.data import read_idx

ROOT = pathlib.Path(__file__).resolve().parents[2]
MNIST = ROOT / "data" / "mnist"


def num_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


# ---- architecture: parameter counts (section 9) ---------------------------------------------
def test_parameter_counts():
    assert num_params(mlp_resnet.ResidualBlock(15, 2)) == 111
    assert num_params(mlp_resnet.ResidualBlock(784, 100)) == 159452
    assert num_params(mlp_resnet.MLPResNet(150, 100, num_blocks=5, num_classes=10)) == 68360
    assert num_params(mlp_resnet.MLPResNet(10, 100, num_blocks=1, num_classes=100)) == 21650
    assert num_params(models.ResNet9()) == 431946


def test_resnet9_and_mlp_resnet_shapes():
    np.random.seed(0)
    x = ndl.Tensor(np.random.rand(2, 3, 32, 32).astype(np.float32))
    assert models.ResNet9()(x).shape == (2, 10)
    assert mlp_resnet.MLPResNet(20, 8)(ndl.Tensor(np.ones((4, 20), np.float32))).shape == (4, 10)


# ---- hw1 functions ---------------------------------------------------------------------------
def test_hw1_softmax_loss_and_nn_epoch_match_numpy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=50).astype(np.uint8)
    W1 = (rng.standard_normal((5, 10)) / np.sqrt(10)).astype(np.float32)
    W2 = (rng.standard_normal((10, 3)) / np.sqrt(3)).astype(np.float32)
    one_hot = np.eye(3, dtype=np.float32)[y]

    loss = apps_simple_ml.softmax_loss(ndl.Tensor(X @ W1[:, :3]), ndl.Tensor(one_hot))
    logits = (X @ W1[:, :3]).astype(np.float64)
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(50), y])
    assert float(loss.numpy()) == pytest.approx(expected, rel=1e-5)

    # One full-batch epoch = one gradient step; the gradient by hand, in float64.
    W1_new, W2_new = apps_simple_ml.nn_epoch(X, y, ndl.Tensor(W1), ndl.Tensor(W2),
                                             lr=1.0, batch=50)
    assert isinstance(W1_new, ndl.Tensor) and isinstance(W2_new, ndl.Tensor)
    H = X.astype(np.float64) @ W1
    A = np.maximum(H, 0)
    E = np.exp(A @ W2)
    G2 = (E / E.sum(1, keepdims=True) - one_hot) / 50
    G1 = (H > 0) * (G2 @ W2.T)
    np.testing.assert_allclose(W1_new.numpy(), W1 - X.T @ G1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(W2_new.numpy(), W2 - A.T @ G2, rtol=1e-4, atol=1e-5)

    loss, err = apps_simple_ml.loss_err(ndl.relu(ndl.Tensor(X) @ W1_new) @ W2_new, y)
    assert 0 <= err <= 1 and np.isfinite(loss)


def test_hw1_parse_mnist_course_path():
    X, y = apps_simple_ml.parse_mnist(str(ROOT / "data" / "t10k-images-idx3-ubyte.gz"),
                                      str(ROOT / "data" / "t10k-labels-idx1-ubyte.gz"))
    assert X.shape == (10000, 784) and X.dtype == np.float32 and y.dtype == np.uint8
    assert X.min() == 0.0 and X.max() == 1.0


# ---- hw2: epoch and train_mnist ---------------------------------------------------------------
def _write_idx_gz(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def small_mnist_dir(tmp_path_factory):
    """The first 300 training and 100 test images, in the course's file layout."""
    folder = tmp_path_factory.mktemp("mnist_small")
    for images, labels, count in [("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                   300),
                                  ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                                   100)]:
        _write_idx_gz(folder / images, read_idx(str(MNIST / images), ndim=3)[:count])
        _write_idx_gz(folder / labels, read_idx(str(MNIST / labels), ndim=1)[:count])
    return folder


def _small_loader(folder, shuffle, batch_size=64, train=True):
    return ndl.data.DataLoader(ndl.data.load_mnist(str(folder), train=train), batch_size,
                               shuffle=shuffle)


def test_epoch_seeds_4_so_runs_repeat(small_mnist_dir):
    """Shuffle order and dropout masks come from np.random.seed(4) inside epoch, so the
    global RNG state before the call does not matter."""
    results = []
    for outside_seed in (123, 999):
        np.random.seed(0)
        model = mlp_resnet.MLPResNet(784, 32, drop_prob=0.3)
        opt = ndl.optim.Adam(model.parameters(), lr=0.01)
        np.random.seed(outside_seed)
        out = mlp_resnet.epoch(_small_loader(small_mnist_dir, shuffle=True), model, opt)
        assert model.training
        results.append((out, [p.numpy().copy() for p in model.parameters()]))
    (out1, params1), (out2, params2) = results
    assert out1 == out2
    for a, b in zip(params1, params2):
        np.testing.assert_array_equal(a, b)


def test_epoch_without_optimizer_evaluates_and_averages_over_samples(small_mnist_dir):
    np.random.seed(0)
    model = mlp_resnet.MLPResNet(784, 16)
    model.train()
    loader = _small_loader(small_mnist_dir, shuffle=False, batch_size=64, train=False)
    err, loss = mlp_resnet.epoch(loader, model)  # 100 images: batches of 64 and 36
    assert not model.training
    X, y = ndl.data.load_mnist(str(small_mnist_dir), train=False)[0:100]
    logits = model(ndl.Tensor(X))
    expected_loss = nn.SoftmaxLoss()(logits, ndl.Tensor(y))
    assert err == pytest.approx(np.mean(logits.numpy().argmax(1) != y))
    assert loss == pytest.approx(float(expected_loss.numpy()), rel=1e-5)


def test_train_mnist_on_a_small_copy(small_mnist_dir):
    out = mlp_resnet.train_mnist(batch_size=50, epochs=3, lr=0.01, hidden_dim=32,
                                 data_dir=str(small_mnist_dir))
    assert len(out) == 4
    train_err, train_loss, test_err, test_loss = out
    assert 0 <= train_err < 0.5 and 0 <= test_err < 0.5  # chance is 0.9
    assert 0 < train_loss < 10 and 0 < test_loss < 10
    again = mlp_resnet.train_mnist(batch_size=50, epochs=3, lr=0.01, hidden_dim=32,
                                   data_dir=str(small_mnist_dir))
    assert again == out  # seeded with 4


# ---- hw4: CIFAR-10 loop with ResNet9 ----------------------------------------------------------
def test_resnet9_one_training_step(device):
    np.random.seed(0)
    model = models.ResNet9(device=device)
    images = np.random.rand(8, 3, 32, 32).astype(np.float32)
    labels = np.random.randint(0, 10, size=8)
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(images, labels), 8)
    before = [p.numpy().copy() for p in model.parameters()]
    acc, loss = apps_simple_ml.train_cifar10(model, loader, n_epochs=1)
    assert model.training and 0 <= acc <= 1 and np.isfinite(loss) and loss > 0
    after = [p.numpy() for p in model.parameters()]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    # epoch_general_cifar10 takes a loss instance, evaluate_cifar10 a class.
    eval_acc, eval_loss = apps_simple_ml.evaluate_cifar10(model, loader)
    assert not model.training and np.isfinite(eval_loss)
    assert apps_simple_ml.epoch_general_cifar10(loader, model, nn.SoftmaxLoss()) == \
        (eval_acc, eval_loss)


# ---- hw4: PTB language model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ptb_dir(tmp_path_factory):
    """A PTB-format corpus: lowercase words, a leading space, one sentence per line."""
    folder = tmp_path_factory.mktemp("ptb")
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(12)]
    for name, lines in (("train.txt", 30), ("test.txt", 8)):
        with open(folder / name, "w", encoding="utf-8") as f:
            for _ in range(lines):
                f.write(" " + " ".join(rng.choice(vocab, size=rng.integers(3, 7))) + " \n")
    return folder


@pytest.mark.parametrize("seq_model", ["rnn", "lstm", "transformer"])
def test_language_model_shapes_and_gradients(seq_model, device):
    np.random.seed(0)
    T, B, L, H, V = 5, 3, 2, 6, 11
    model = models.LanguageModel(4, V, H, num_layers=L, seq_model=seq_model, seq_len=T,
                                 device=device)
    x = ndl.Tensor(np.random.randint(0, V, (T, B)).astype(np.float32), device=device)
    out, h = model(x)
    assert out.shape == (T * B, V)
    if seq_model == "lstm":
        assert isinstance(h, tuple) and [s.shape for s in h] == [(L, B, H)] * 2
    elif seq_model == "rnn":
        assert h.shape == (L, B, H)
    out.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.nd_only
def test_lstm_language_model_trains_on_both_cpu_devices(ptb_dir):
    if not hasattr(nn, "LSTM"):
        pytest.skip("needle.nn.LSTM is not implemented yet")
    corpus = ndl.data.Corpus(str(ptb_dir))
    vocab = len(corpus.dictionary)
    results = {}
    for device in (ndl.cpu_numpy(), ndl.cpu()):
        np.random.seed(0)
        data = ndl.data.batchify(corpus.train, batch_size=4, device=device, dtype="float32")
        model = models.LanguageModel(8, vocab, hidden_size=8, num_layers=2, seq_model="lstm",
                                     device=device)
        np.random.seed(1)
        first_loss = apps_simple_ml.evaluate_ptb(model, data, seq_len=6, device=device)[1]
        train_acc, train_loss = apps_simple_ml.train_ptb(model, data, seq_len=6, n_epochs=2,
                                                         lr=1.0, clip=1.0, device=device)
        test_data = ndl.data.batchify(corpus.test, batch_size=4, device=device,
                                      dtype="float32")
        test_acc, test_loss = apps_simple_ml.evaluate_ptb(model, test_data, seq_len=6,
                                                          device=device)
        assert 0 <= train_acc <= 1 and 0 <= test_acc <= 1
        assert np.isfinite([train_loss, test_loss]).all()
        assert apps_simple_ml.evaluate_ptb(model, data, seq_len=6, device=device)[1] \
            < first_loss
        results[str(device)] = (train_acc, train_loss, test_acc, test_loss)
    np.testing.assert_allclose(results["cpu()"], results["cpu_numpy()"], rtol=1e-4)


# ---- import conventions -----------------------------------------------------------------------
def _run_python(code, cwd, env_path):
    env = dict(os.environ, PYTHONPATH=env_path)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_flat_import_from_the_repository_root():
    """hw1/hw2/hw4: the root is the cwd, ./python and ./apps are appended to sys.path."""
    code = ("import sys; sys.path.append('./python'); sys.path.append('./apps');"
            "import needle; from simple_ml import *; from mlp_resnet import *;"
            "from models import *; from apps.models import ResNet9 as R;"
            "print(nn_epoch.__module__, epoch.__module__, LanguageModel.__name__,"
            " train_ptb.__module__)")
    done = _run_python(code, ROOT, "")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["simple_ml", "mlp_resnet", "LanguageModel", "simple_ml"]


def test_flat_import_with_only_apps_on_the_path(tmp_path):
    """With only ./apps on sys.path, `from simple_ml import *` works: apps/simple_ml.py takes
    `apps.models` when the project is installed (pip install -e .), else `models`."""
    code = (f"import sys; sys.path.append({str(ROOT / 'apps')!r});"
            "import needle; from simple_ml import *; print(ResNet9.__module__)")
    done = _run_python(code, tmp_path, str(ROOT / "python"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() in (["models"], ["apps.models"])
