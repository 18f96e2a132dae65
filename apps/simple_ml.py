"""hw1 and hw4 training helpers on needle (COURSE_API.md section 9).

hw1: `parse_mnist`, `softmax_loss(Z, y_one_hot)`, `nn_epoch` (returns new weights), `loss_err`.
hw4: `epoch_general_cifar10` / `train_cifar10` / `evaluate_cifar10` and the PTB trio
`epoch_general_ptb` / `train_ptb` / `evaluate_ptb`; each seeds NumPy with 4 first and returns
(average accuracy, average loss), both averaged over samples (tokens for PTB).

As in the course, `loss_fn` is an *instance* in the `epoch_general_*` functions and a *class*
in `train_*` / `evaluate_*` (either is accepted here). Batches are moved to the model's
device when they are not there already.

This module does `from apps.models import *` as the course's does, so the repository root
must be importable (it is when tests run as `python -m pytest` from the root); with only
`apps/` on sys.path it falls back to `from models import *`.
"""
import numpy as np

import needle as ndl
import needle.nn as nn
from needle.data.idx import read_idx

try:
    from apps.models import *  # noqa: F401,F403  (the course's import)
except ModuleNotFoundError as error:
    if error.name not in ("apps", "apps.models"):
        raise
    from models import *  # noqa: F401,F403  (only apps/ is on sys.path)

# ResNet9 and LanguageModel come from the models star-import (as in the course's file).
__all__ = ["parse_mnist", "softmax_loss", "nn_epoch", "loss_err",  # noqa: F405
           "epoch_general_cifar10", "train_cifar10", "evaluate_cifar10",
           "epoch_general_ptb", "train_ptb", "evaluate_ptb",
           "ResNet9", "LanguageModel"]


# ---- hw1 ----------------------------------------------------------------------------------
def parse_mnist(image_filesname, label_filename):
    """Read gzip MNIST images and labels: (X float32 (N, 784) in [0, 1] (pixel / 255),
    y uint8 (N,)). (The first parameter's odd name is the course's.)"""
    images = read_idx(image_filesname, 3)  # checks gzip, magic, size (DataFileError)
    labels = read_idx(label_filename, 1)
    if len(images) != len(labels):
        raise ValueError(f"{image_filesname} has {len(images)} images but {label_filename} "
                         f"has {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= 255
    return X, labels.copy()


def softmax_loss(Z, y_one_hot):
    """Mean softmax loss of logits Z (B, k) against one-hot labels y_one_hot (B, k), both
    Tensors: mean_b(logsumexp(Z_b) - <Z_b, y_b>). Differentiable in both arguments."""
    batch = Z.shape[0]
    return (ndl.logsumexp(Z, axes=(1,)).sum() - (Z * y_one_hot).sum()) / batch


def _one_hot(y, k, dtype):
    one_hot = np.zeros((len(y), k), dtype=dtype)
    one_hot[np.arange(len(y)), y] = 1
    return one_hot


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    """One epoch of minibatch SGD for logits = ReLU(X W1) W2, in order, no shuffling.

    X NumPy (N, n), y NumPy (N,) integer labels, W1 (n, hidden) and W2 (hidden, k) Tensors.
    Gradients come from needle's autograd through `softmax_loss`; each step makes new
    constant weight Tensors, so no graph survives between batches. Returns (W1, W2), the
    new Tensors (the arguments are not modified).
    """
    dtype = W1.dtype
    k = W2.shape[1]
    for start in range(0, X.shape[0], batch):
        Xb = ndl.Tensor(X[start:start + batch], dtype=dtype, requires_grad=False)
        yb = ndl.Tensor(_one_hot(y[start:start + batch], k, dtype), requires_grad=False)
        W1 = ndl.Tensor(W1.numpy(), dtype=dtype, requires_grad=True)
        W2 = ndl.Tensor(W2.numpy(), dtype=dtype, requires_grad=True)
        loss = softmax_loss(ndl.relu(Xb @ W1) @ W2, yb)
        loss.backward(create_graph=False)
        W1 = ndl.Tensor(W1.numpy() - lr * W1.grad.numpy(), dtype=dtype)
        W2 = ndl.Tensor(W2.numpy() - lr * W2.grad.numpy(), dtype=dtype)
    return W1, W2


def loss_err(h, y):
    """(softmax loss, error rate) of logits h (a Tensor, (N, k)) against NumPy labels y."""
    y_one_hot = ndl.Tensor(_one_hot(y, h.shape[-1], h.dtype), device=h.device,
                           requires_grad=False)
    return softmax_loss(h, y_one_hot).numpy(), np.mean(h.numpy().argmax(axis=1) != y)


# ---- hw4: shared pieces -------------------------------------------------------------------
def _instance(loss_fn):
    """The course passes a loss instance to epoch_* and a class to train_*; take either."""
    return loss_fn() if isinstance(loss_fn, type) else loss_fn


def _model_device(model):
    params = model.parameters()
    return params[0].device if params else None


def _to_device(tensor, device):
    if device is None or tensor.device == device:
        return tensor
    return ndl.Tensor(tensor, device=device, requires_grad=False)


def _detach(h):
    if h is None:
        return None
    if isinstance(h, (tuple, list)):
        return tuple(_detach(x) for x in h)
    return h.detach()


def _step(loss, opt, model, clip=None):
    opt.reset_grad()
    loss.backward(create_graph=False)
    if clip is not None:
        ndl.optim.clip_grad_norm(model.parameters(), clip)
    opt.step()


# ---- hw4: CIFAR-10 ------------------------------------------------------------------------
def epoch_general_cifar10(dataloader, model, loss_fn=nn.SoftmaxLoss(), opt=None):
    """One pass over `dataloader`: trains (model.train()) with `opt`, else evaluates.

    Seeds NumPy with 4. loss_fn: a loss instance (a class is also accepted). Returns
    (accuracy, average loss) over all samples.
    """
    np.random.seed(4)
    loss_fn = _instance(loss_fn)
    training = opt is not None
    model.train() if training else model.eval()
    device = _model_device(model)
    correct, total_loss, samples = 0, 0.0, 0
    for X, y in dataloader:
        X, y = _to_device(X, device), _to_device(y, device)
        if training:
            logits = model(X)
            loss = loss_fn(logits, y)
            _step(loss, opt, model)
        else:
            with ndl.no_grad():
                logits = model(X)
                loss = loss_fn(logits, y)
        count = y.shape[0]
        correct += int(np.sum(logits.numpy().argmax(axis=1) == y.numpy()))
        total_loss += float(loss.numpy()) * count
        samples += count
    return correct / samples, total_loss / samples


def train_cifar10(model, dataloader, n_epochs=1, optimizer=ndl.optim.Adam, lr=0.001,
                  weight_decay=0.001, loss_fn=nn.SoftmaxLoss):
    """Train for n_epochs; returns the last epoch's (accuracy, average loss).

    loss_fn: a loss class (instantiated here; an instance is also accepted).
    """
    np.random.seed(4)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    avg_acc = avg_loss = None
    for _ in range(n_epochs):
        avg_acc, avg_loss = epoch_general_cifar10(dataloader, model, _instance(loss_fn), opt)
    return avg_acc, avg_loss


def evaluate_cifar10(model, dataloader, loss_fn=nn.SoftmaxLoss):
    """(accuracy, average loss) of `model` in eval mode; loss_fn a class (or instance)."""
    np.random.seed(4)
    return epoch_general_cifar10(dataloader, model, _instance(loss_fn))


# ---- hw4: Penn Treebank -------------------------------------------------------------------
def epoch_general_ptb(data, model, seq_len=40, loss_fn=nn.SoftmaxLoss(), opt=None, clip=None,
                      device=None, dtype="float32"):
    """One pass over batchified PTB `data` (nbatch, batch_size) in windows of seq_len rows.

    Truncated backpropagation through time: the hidden state is carried from one window to
    the next, detached. Trains with `opt` (gradients clipped to total norm `clip` when
    given), else evaluates. Seeds NumPy with 4. Returns (accuracy, average loss) over all
    predicted tokens.
    """
    np.random.seed(4)
    loss_fn = _instance(loss_fn)
    training = opt is not None
    model.train() if training else model.eval()
    nbatch = data.shape[0]
    hidden = None
    correct, total_loss, tokens = 0, 0.0, 0
    for i in range(0, nbatch - 1, seq_len):
        X, y = ndl.data.get_batch(data, i, seq_len, device=device, dtype=dtype)
        if training:
            logits, hidden = model(X, hidden)
            loss = loss_fn(logits, y)
            _step(loss, opt, model, clip)
        else:
            with ndl.no_grad():
                logits, hidden = model(X, hidden)
                loss = loss_fn(logits, y)
        hidden = _detach(hidden)
        count = y.shape[0]
        correct += int(np.sum(logits.numpy().argmax(axis=1) == y.numpy()))
        total_loss += float(loss.numpy()) * count
        tokens += count
    return correct / tokens, total_loss / tokens


def train_ptb(model, data, seq_len=40, n_epochs=1, optimizer=ndl.optim.SGD, lr=4.0,
              weight_decay=0.0, loss_fn=nn.SoftmaxLoss, clip=None, device=None,
              dtype="float32"):
    """Train for n_epochs; returns the last epoch's (accuracy, average loss).

    loss_fn: a loss class (instantiated here; an instance is also accepted).
    """
    np.random.seed(4)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    avg_acc = avg_loss = None
    for _ in range(n_epochs):
        avg_acc, avg_loss = epoch_general_ptb(data, model, seq_len, _instance(loss_fn), opt,
                                              clip, device, dtype)
    return avg_acc, avg_loss


def evaluate_ptb(model, data, seq_len=40, loss_fn=nn.SoftmaxLoss, device=None,
                 dtype="float32"):
    """(accuracy, average loss) of `model` on `data` in eval mode."""
    np.random.seed(4)
    return epoch_general_ptb(data, model, seq_len, _instance(loss_fn), None, None, device,
                             dtype)


if __name__ == "__main__":
    # A short PTB run, as at the end of the course's hw4 file (needs data/ptb).
    corpus = ndl.data.Corpus("data/ptb")
    train_data = ndl.data.batchify(corpus.train, batch_size=16, device=ndl.cpu(),
                                   dtype="float32")
    model = LanguageModel(30, len(corpus.dictionary), hidden_size=10,  # noqa: F405
                          num_layers=2, seq_model="rnn", device=ndl.cpu())
    print(train_ptb(model, train_data, seq_len=1, n_epochs=1, device=ndl.cpu()))
    print(evaluate_ptb(model, train_data, seq_len=40, device=ndl.cpu()))
