"""hw0: softmax regression and a two-layer network in plain NumPy (COURSE_API.md section 9).

The course's hw0 tests run from the repository root and do

    sys.path.append("./src")
    from simple_ml import *

so this module needs nothing but NumPy (and, optionally, the compiled `simple_ml_ext`; see
`softmax_regression_epoch_cpp`). Data: `data/train-images-idx3-ubyte.gz` and friends.

Conventions (the course's contract):
- `parse_mnist` -> X float32 (N, 784) divided by 255 (one global scale), y uint8 (N,).
- The epoch functions update their weight arrays *in place* and return None. Minibatches are
  taken in order, X[0:batch], X[batch:2 batch], ...; no shuffling. A short final batch is
  used as it is, its gradient averaged over its own size.
"""
import gzip
import struct

import numpy as np

try:  # the compiled extension, built with CMake (see docs/course.md); optional
    import simple_ml_ext
except ImportError:  # not built: softmax_regression_epoch_cpp falls back to NumPy
    simple_ml_ext = None

__all__ = ["add", "parse_mnist", "softmax_loss", "softmax_regression_epoch", "nn_epoch",
           "loss_err", "softmax_regression_epoch_cpp", "train_softmax", "train_nn"]


def add(x, y):
    """x + y: the warm-up function of hw0 (works for numbers, arrays, strings...)."""
    return x + y


def _read_idx_gz(filename, magic, ndim):
    with gzip.open(filename, "rb") as f:
        raw = f.read()
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{filename}: too short for an IDX header ({len(raw)} bytes)")
    found, *shape = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found != magic:
        raise ValueError(f"{filename}: bad magic number {found:#010x}, expected {magic:#010x}")
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise ValueError(f"{filename}: header promises {count} bytes of data, file has "
                         f"{len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def parse_mnist(image_filename, label_filename):
    """Read a gzip MNIST image file and label file (IDX format).

    Returns (X, y): X float32 (num_examples, rows * cols) with values in [0, 1] (pixel / 255),
    y uint8 (num_examples,) with the digits 0-9.
    """
    images = _read_idx_gz(image_filename, 0x00000803, 3)
    labels = _read_idx_gz(label_filename, 0x00000801, 1)
    if len(images) != len(labels):
        raise ValueError(f"{image_filename} has {len(images)} images but {label_filename} "
                         f"has {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= 255
    return X, labels.copy()


def _softmax(Z):
    """Row-wise softmax, max-shifted so large logits do not overflow."""
    exp = np.exp(Z - Z.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def softmax_loss(Z, y):
    """Mean softmax (cross-entropy) loss of logits Z (batch, k) and integer labels y (batch,).

    loss = mean_i [log sum_j exp(Z_ij) - Z_i,y_i], with the log-sum-exp max-shifted.
    """
    Z = np.asarray(Z)
    y = np.asarray(y)
    shift = Z.max(axis=1, keepdims=True)
    log_sum_exp = np.log(np.exp(Z - shift).sum(axis=1)) + shift[:, 0]
    return np.mean(log_sum_exp - Z[np.arange(len(y)), y])


def _one_hot(y, k, dtype):
    one_hot = np.zeros((len(y), k), dtype=dtype)
    one_hot[np.arange(len(y)), y] = 1
    return one_hot


def softmax_regression_epoch(X, y, theta, lr=0.1, batch=100):
    """One epoch of minibatch SGD for softmax regression; updates theta (n, k) in place.

    For each minibatch Xb (B, n): theta -= lr * Xb^T (softmax(Xb theta) - I_y) / B.
    """
    k = theta.shape[1]
    for start in range(0, X.shape[0], batch):
        Xb, yb = X[start:start + batch], y[start:start + batch]
        probs = _softmax(Xb @ theta)
        grad = Xb.T @ (probs - _one_hot(yb, k, probs.dtype)) / len(yb)
        theta -= lr * grad


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    """One epoch of minibatch SGD for logits = ReLU(X W1) W2; updates W1, W2 in place.

    W1 (n, hidden), W2 (hidden, k). Per minibatch (B rows):
    Z1 = ReLU(Xb W1); G2 = softmax(Z1 W2) - I_y; G1 = 1[Z1 > 0] * (G2 W2^T);
    W1 -= lr Xb^T G1 / B; W2 -= lr Z1^T G2 / B (both gradients from the same forward pass).
    """
    k = W2.shape[1]
    for start in range(0, X.shape[0], batch):
        Xb, yb = X[start:start + batch], y[start:start + batch]
        Z1 = np.maximum(Xb @ W1, 0)
        G2 = _softmax(Z1 @ W2) - _one_hot(yb, k, W2.dtype)
        G1 = (Z1 > 0) * (G2 @ W2.T)
        grad_W1 = Xb.T @ G1 / len(yb)
        grad_W2 = Z1.T @ G2 / len(yb)
        W1 -= lr * grad_W1
        W2 -= lr * grad_W2


def loss_err(h, y):
    """(mean softmax loss, error rate) of logits h (N, k) against labels y (N,)."""
    return softmax_loss(h, y), np.mean(h.argmax(axis=1) != y)


def softmax_regression_epoch_cpp(X, y, theta, lr=0.1, batch=100):
    """softmax_regression_epoch through the compiled `simple_ml_ext`, when it is importable.

    The course implements this in C++ (src/simple_ml_ext.cpp: X float32 (m, n), y uint8 (m,),
    theta float32 (n, k) C-contiguous, updated in place). When the extension has not been
    built (see docs/course.md for the CMake command), this falls back to the NumPy
    `softmax_regression_epoch`, which follows the same contract, so callers need not care.
    """
    if simple_ml_ext is None:
        softmax_regression_epoch(X, y, theta, lr=lr, batch=batch)
    else:
        simple_ml_ext.softmax_regression_epoch_cpp(X, y, theta, lr, batch)


# ---- the course skeleton's training loops (they print a table; tests do not need them) ----
def train_softmax(X_tr, y_tr, X_te, y_te, epochs=10, lr=0.5, batch=100, cpp=False):
    """Train softmax regression and print train/test loss and error after each epoch."""
    theta = np.zeros((X_tr.shape[1], int(y_tr.max()) + 1), dtype=np.float32)
    print("| Epoch | Train Loss | Train Err | Test Loss | Test Err |")
    for epoch in range(epochs):
        if not cpp:
            softmax_regression_epoch(X_tr, y_tr, theta, lr=lr, batch=batch)
        else:
            softmax_regression_epoch_cpp(X_tr, y_tr, theta, lr=lr, batch=batch)
        train_loss, train_err = loss_err(X_tr @ theta, y_tr)
        test_loss, test_err = loss_err(X_te @ theta, y_te)
        print("|  {:>4} |    {:.5f} |   {:.5f} |   {:.5f} |  {:.5f} |"
              .format(epoch, train_loss, train_err, test_loss, test_err))


def train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=500, epochs=10, lr=0.5, batch=100):
    """Train the two-layer network (weights seeded with 0) and print a table per epoch."""
    n, k = X_tr.shape[1], int(y_tr.max()) + 1
    np.random.seed(0)
    W1 = np.random.randn(n, hidden_dim).astype(np.float32) / np.sqrt(hidden_dim)
    W2 = np.random.randn(hidden_dim, k).astype(np.float32) / np.sqrt(k)
    print("| Epoch | Train Loss | Train Err | Test Loss | Test Err |")
    for epoch in range(epochs):
        nn_epoch(X_tr, y_tr, W1, W2, lr=lr, batch=batch)
        train_loss, train_err = loss_err(np.maximum(X_tr @ W1, 0) @ W2, y_tr)
        test_loss, test_err = loss_err(np.maximum(X_te @ W1, 0) @ W2, y_te)
        print("|  {:>4} |    {:.5f} |   {:.5f} |   {:.5f} |  {:.5f} |"
              .format(epoch, train_loss, train_err, test_loss, test_err))


if __name__ == "__main__":
    X_tr, y_tr = parse_mnist("data/train-images-idx3-ubyte.gz",
                             "data/train-labels-idx1-ubyte.gz")
    X_te, y_te = parse_mnist("data/t10k-images-idx3-ubyte.gz",
                             "data/t10k-labels-idx1-ubyte.gz")
    print("Training softmax regression")
    train_softmax(X_tr, y_tr, X_te, y_te, epochs=10, lr=0.1)
    print("\nTraining two layer neural network w/ 100 hidden units")
    train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=100, epochs=20, lr=0.2)
