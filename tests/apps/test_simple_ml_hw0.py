"""hw0's pure-NumPy src/simple_ml.py and its C++ twin src/simple_ml_ext.cpp.

References are computed here: a loop-per-batch NumPy re-implementation written differently
(explicit one-hot via np.eye, float64), a finite-difference gradient, and torch autograd when
installed. The module is loaded from its file under a private name, because apps/simple_ml.py
(hw1/hw4) has the same module name.
"""
import glob
import importlib.machinery
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from needle.data import read_idx
from tests.support.ci_skips import skip_unbuilt

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
DATA = ROOT / "data"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _load_hw0():
    spec = importlib.util.spec_from_file_location("hw0_simple_ml", SRC / "simple_ml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hw0 = _load_hw0()


@pytest.fixture(scope="module")
def mnist_train():
    return hw0.parse_mnist(*(str(DATA / name) for name in FILES["train"]))


def _problem(seed=0, m=50, n=5, k=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)).astype(np.float32)
    y = rng.integers(0, k, size=m).astype(np.uint8)
    return X, y


# ---- references -----------------------------------------------------------------------------
def _ref_loss(Z, y):
    Z = np.asarray(Z, dtype=np.float64)
    probs = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(probs[np.arange(len(y)), y])))


def _ref_softmax_epoch(X, y, theta, lr, batch):
    theta = theta.astype(np.float64)
    eye = np.eye(theta.shape[1])
    for start in range(0, len(X), batch):
        Xb, Ib = X[start:start + batch].astype(np.float64), eye[y[start:start + batch]]
        expZ = np.exp(Xb @ theta)
        theta = theta - lr * Xb.T @ (expZ / expZ.sum(axis=1, keepdims=True) - Ib) / len(Xb)
    return theta


def _ref_nn_epoch(X, y, W1, W2, lr, batch):
    W1, W2 = W1.astype(np.float64), W2.astype(np.float64)
    eye = np.eye(W2.shape[1])
    for start in range(0, len(X), batch):
        Xb, Ib = X[start:start + batch].astype(np.float64), eye[y[start:start + batch]]
        hidden = Xb @ W1
        active = hidden > 0
        Z1 = hidden * active
        expZ = np.exp(Z1 @ W2)
        G2 = expZ / expZ.sum(axis=1, keepdims=True) - Ib
        G1 = active * (G2 @ W2.T)
        W1, W2 = W1 - lr * Xb.T @ G1 / len(Xb), W2 - lr * Z1.T @ G2 / len(Xb)
    return W1, W2


# ---- add, parse_mnist -----------------------------------------------------------------------
def test_add():
    assert hw0.add(5, 6) == 11
    assert hw0.add(3.2, 1.0) == pytest.approx(4.2)
    assert hw0.add("a", "b") == "ab"
    np.testing.assert_array_equal(hw0.add(np.array([1, 2]), np.array([3, 4])), [4, 6])


def test_parse_mnist_real_files(mnist_train):
    X, y = mnist_train
    assert X.dtype == np.float32 and y.dtype == np.uint8
    assert X.shape == (60000, 784) and y.shape == (60000,)
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    assert set(np.unique(y)) == set(range(10))
    # One global scale (pixel / 255), checked against needle's independent IDX reader.
    raw = read_idx(str(DATA / "mnist" / FILES["train"][0]), ndim=3)
    np.testing.assert_array_equal(X[:500], raw[:500].reshape(500, 784) / np.float32(255))


def test_parse_mnist_both_data_layouts():
    """data/NAME (the course's path) and data/mnist/NAME hold the same file."""
    flat = hw0.parse_mnist(*(str(DATA / n) for n in FILES["test"]))
    nested = hw0.parse_mnist(*(str(DATA / "mnist" / n) for n in FILES["test"]))
    assert flat[0].shape == (10000, 784)
    np.testing.assert_array_equal(flat[0], nested[0])
    np.testing.assert_array_equal(flat[1], nested[1])


# ---- softmax_loss, loss_err -----------------------------------------------------------------
def test_softmax_loss_matches_numpy():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, size=200)
    assert hw0.softmax_loss(np.zeros((200, 10), np.float32), y) == pytest.approx(np.log(10))
    Z = rng.standard_normal((200, 10)).astype(np.float32)
    assert hw0.softmax_loss(Z, y) == pytest.approx(_ref_loss(Z, y), rel=1e-6)
    # Large logits do not overflow (max-shifted) and still give the exact loss.
    big = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert hw0.softmax_loss(big, np.array([0, 0])) == pytest.approx(500.0)


def test_loss_err():
    h = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    y = np.array([0, 2, 2, 0])
    loss, err = hw0.loss_err(h, y)
    assert err == pytest.approx(0.25)
    assert loss == pytest.approx(_ref_loss(h, y))


# ---- softmax regression ---------------------------------------------------------------------
def test_softmax_regression_full_batch_step_is_minus_lr_grad():
    """One full batch from theta = 0: theta = -lr * dloss/dtheta (central differences)."""
    X, y = _problem()
    theta = np.zeros((5, 3), dtype=np.float32)
    grad, eps = np.zeros((5, 3)), 1e-5
    for idx in np.ndindex(*theta.shape):
        step = np.zeros((5, 3))
        step[idx] = eps
        grad[idx] = (_ref_loss(X @ step, y) - _ref_loss(X @ -step, y)) / (2 * eps)
    result = hw0.softmax_regression_epoch(X, y, theta, lr=1.0, batch=50)
    assert result is None  # in place
    np.testing.assert_allclose(theta, -grad, rtol=1e-4, atol=1e-5)


def test_softmax_regression_epoch_matches_reference(mnist_train):
    X, y = mnist_train[0][:1050], mnist_train[1][:1050]  # a short last batch (50 rows)
    theta = np.zeros((784, 10), dtype=np.float32)
    same_object = theta
    hw0.softmax_regression_epoch(X, y, theta, lr=0.2, batch=100)
    assert theta is same_object and theta.dtype == np.float32
    expected = _ref_softmax_epoch(X, y, np.zeros((784, 10)), lr=0.2, batch=100)
    np.testing.assert_allclose(theta, expected, rtol=1e-4, atol=1e-5)
    loss, err = hw0.loss_err(X @ theta, y)
    assert loss < np.log(10) and err < 0.5


def test_softmax_regression_cpp_falls_back_to_numpy(monkeypatch):
    X, y = _problem(seed=3, m=37)
    theta_np, theta_fallback = np.zeros((5, 3), np.float32), np.zeros((5, 3), np.float32)
    hw0.softmax_regression_epoch(X, y, theta_np, lr=0.5, batch=10)
    monkeypatch.setattr(hw0, "simple_ml_ext", None)
    hw0.softmax_regression_epoch_cpp(X, y, theta_fallback, lr=0.5, batch=10)
    np.testing.assert_array_equal(theta_fallback, theta_np)


# ---- two-layer network ----------------------------------------------------------------------
def _nn_weights(seed=2, n=5, hidden=10, k=3):
    rng = np.random.default_rng(seed)
    W1 = (rng.standard_normal((n, hidden)) / np.sqrt(hidden)).astype(np.float32)
    W2 = (rng.standard_normal((hidden, k)) / np.sqrt(k)).astype(np.float32)
    return W1, W2


def test_nn_epoch_matches_reference_in_place():
    X, y = _problem(seed=4, m=45)
    W1, W2 = _nn_weights()
    W1_obj, W2_obj = W1, W2
    expected = _ref_nn_epoch(X, y, W1, W2, lr=0.3, batch=10)
    assert hw0.nn_epoch(X, y, W1, W2, lr=0.3, batch=10) is None
    assert W1 is W1_obj and W2 is W2_obj and W1.dtype == np.float32
    np.testing.assert_allclose(W1, expected[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(W2, expected[1], rtol=1e-4, atol=1e-5)


def test_nn_epoch_full_batch_step_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    X, y = _problem(seed=5)
    W1, W2 = _nn_weights(seed=6)
    tW1 = torch.tensor(W1, dtype=torch.float64, requires_grad=True)
    tW2 = torch.tensor(W2, dtype=torch.float64, requires_grad=True)
    logits = torch.relu(torch.tensor(X, dtype=torch.float64) @ tW1) @ tW2
    torch.nn.functional.cross_entropy(logits, torch.tensor(y, dtype=torch.long)).backward()
    hw0.nn_epoch(X, y, W1, W2, lr=1.0, batch=50)
    np.testing.assert_allclose(W1, tW1.detach().numpy() - tW1.grad.numpy(), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(W2, tW2.detach().numpy() - tW2.grad.numpy(), rtol=1e-4,
                               atol=1e-5)


def test_nn_epoch_on_mnist_slice_lowers_the_loss(mnist_train):
    X, y = mnist_train[0][:1000], mnist_train[1][:1000]
    rng = np.random.default_rng(0)
    W1 = (rng.standard_normal((784, 100)) / np.sqrt(100)).astype(np.float32)
    W2 = (rng.standard_normal((100, 10)) / np.sqrt(10)).astype(np.float32)
    before = hw0.loss_err(np.maximum(X @ W1, 0) @ W2, y)[0]
    expected = _ref_nn_epoch(X, y, W1, W2, lr=0.2, batch=100)
    hw0.nn_epoch(X, y, W1, W2, lr=0.2, batch=100)
    np.testing.assert_allclose(W1, expected[0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(W2, expected[1], rtol=1e-3, atol=1e-5)
    assert hw0.loss_err(np.maximum(X @ W1, 0) @ W2, y)[0] < before


# ---- the C++ extension ----------------------------------------------------------------------
def _load_extension(path):
    loader = importlib.machinery.ExtensionFileLoader("simple_ml_ext", str(path))
    spec = importlib.util.spec_from_file_location("simple_ml_ext", str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _check_extension(ext, mnist_train, monkeypatch):
    X, y = mnist_train[0][:730], mnist_train[1][:730]  # a short last batch
    theta_np, theta_cpp = np.zeros((784, 10), np.float32), np.zeros((784, 10), np.float32)
    hw0.softmax_regression_epoch(X, y, theta_np, lr=0.2, batch=100)
    monkeypatch.setattr(hw0, "simple_ml_ext", ext)
    same_object = theta_cpp
    hw0.softmax_regression_epoch_cpp(X, y, theta_cpp, lr=0.2, batch=100)
    assert theta_cpp is same_object
    np.testing.assert_allclose(theta_cpp, theta_np, rtol=1e-5, atol=1e-6)
    # theta must be updatable in place: a float64 or non-contiguous theta is refused rather
    # than silently copied (the update would be lost); out-of-range labels are refused.
    with pytest.raises(TypeError, match="theta"):
        ext.softmax_regression_epoch_cpp(X, y, np.zeros((784, 10)), 0.1, 100)
    with pytest.raises(TypeError, match="theta"):
        ext.softmax_regression_epoch_cpp(X, y, np.zeros((10, 784), np.float32).T, 0.1, 100)
    with pytest.raises(ValueError, match="out of range"):
        ext.softmax_regression_epoch_cpp(X[:5], np.full(5, 12, np.uint8),
                                         np.zeros((784, 10), np.float32), 0.1, 5)


def test_prebuilt_extension_matches_numpy(mnist_train, monkeypatch):
    """The module CMake wrote into src/ (when it was built after the last .cpp edit)."""
    source = SRC / "simple_ml_ext.cpp"
    built = [p for p in glob.glob(str(SRC / "simple_ml_ext*.so"))
             if os.path.getmtime(p) >= os.path.getmtime(source)]
    if not built:
        skip_unbuilt("src/simple_ml_ext is not built (cmake -S . -B build && cmake --build "
                    "build); test_cmake_builds_extension covers the build")
    _check_extension(_load_extension(built[0]), mnist_train, monkeypatch)


@pytest.mark.slow
def test_cmake_builds_extension(tmp_path, mnist_train, monkeypatch):
    """The documented CMake command builds the extension (here into a temporary folder)."""
    if shutil.which("cmake") is None:
        skip_unbuilt("cmake is not installed")
    pytest.importorskip("pybind11")
    build, out = tmp_path / "build", tmp_path / "out"
    configure = ["cmake", "-S", str(ROOT), "-B", str(build),
                 f"-DPython_EXECUTABLE={sys.executable}", f"-DSIMPLE_ML_EXT_OUTPUT_DIR={out}",
                 f"-DNEEDLE_BACKEND_OUTPUT_DIR={out}"]
    # Only hw0's target: the same project also builds the native backend (about a minute).
    for command in (configure, ["cmake", "--build", str(build), "--target", "simple_ml_ext"]):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    built = glob.glob(str(out / "simple_ml_ext*"))
    assert len(built) == 1, built
    _check_extension(_load_extension(built[0]), mnist_train, monkeypatch)
