"""hw2: an MLP with residual blocks trained on MNIST (COURSE_API.md section 9).

Importable both ways the course uses:

    from apps.mlp_resnet import *          # repository root on sys.path
    sys.path.append("./apps"); from mlp_resnet import *

Conventions that fix the course's golden values: `epoch` and `train_mnist` call
`np.random.seed(4)` first; `epoch` trains (model.train()) iff an optimizer is given and
evaluates otherwise; it returns the fraction of misclassified samples and the loss averaged
over samples (each batch's mean loss weighted by its size, which matters for a short last
batch).
"""
import os

import numpy as np

import needle as ndl
import needle.nn as nn

__all__ = ["ResidualBlock", "MLPResNet", "epoch", "train_mnist"]

MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def ResidualBlock(dim, hidden_dim, norm=nn.BatchNorm1d, drop_prob=0.1):
    """ReLU(x + norm(Linear(Dropout(ReLU(norm(Linear(x)))))))): (B, dim) -> (B, dim).

    Linear(dim, hidden_dim), norm(hidden_dim), ReLU, Dropout(drop_prob), Linear(hidden_dim,
    dim), norm(dim) inside the residual, then ReLU.
    """
    return nn.Sequential(
        nn.Residual(nn.Sequential(
            nn.Linear(dim, hidden_dim),
            norm(hidden_dim),
            nn.ReLU(),
            nn.Dropout(drop_prob),
            nn.Linear(hidden_dim, dim),
            norm(dim),
        )),
        nn.ReLU(),
    )


def MLPResNet(dim, hidden_dim=100, num_blocks=3, num_classes=10, norm=nn.BatchNorm1d,
              drop_prob=0.1):
    """Linear(dim, hidden) -> ReLU -> num_blocks x ResidualBlock(hidden, hidden // 2) ->
    Linear(hidden, num_classes): (B, dim) -> (B, num_classes) logits."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim),
        nn.ReLU(),
        *[ResidualBlock(hidden_dim, hidden_dim // 2, norm=norm, drop_prob=drop_prob)
          for _ in range(num_blocks)],
        nn.Linear(hidden_dim, num_classes),
    )


def epoch(dataloader, model, opt=None):
    """One pass over `dataloader`: trains with `opt` when given, else evaluates.

    Seeds NumPy with 4 first (Dropout masks). Returns (error rate, average loss), both over
    all samples.
    """
    np.random.seed(4)
    loss_fn = nn.SoftmaxLoss()
    training = opt is not None
    model.train() if training else model.eval()
    errors, samples, total_loss = 0, 0, 0.0
    for X, y in dataloader:
        if training:
            opt.reset_grad()
            logits = model(X)
            loss = loss_fn(logits, y)
            loss.backward(create_graph=False)
            opt.step()
        else:
            with ndl.no_grad():
                logits = model(X)
                loss = loss_fn(logits, y)
        count = y.shape[0]
        errors += int(np.sum(logits.numpy().argmax(axis=1) != y.numpy()))
        total_loss += float(loss.numpy()) * count
        samples += count
    return errors / samples, total_loss / samples


def train_mnist(batch_size=100, epochs=10, optimizer=ndl.optim.Adam, lr=0.001,
                weight_decay=0.001, hidden_dim=100, data_dir="data"):
    """Train MLPResNet(784, hidden_dim) on MNIST from data_dir (the course's file names).

    Seeds NumPy with 4; the training loader shuffles, the test loader does not. Returns
    (train_error, train_loss, test_error, test_loss): the last training epoch's numbers and
    one evaluation pass over the test set.
    """
    np.random.seed(4)
    train_set = ndl.data.MNISTDataset(*(os.path.join(data_dir, f) for f in MNIST_FILES["train"]))
    test_set = ndl.data.MNISTDataset(*(os.path.join(data_dir, f) for f in MNIST_FILES["test"]))
    train_loader = ndl.data.DataLoader(train_set, batch_size, shuffle=True)
    test_loader = ndl.data.DataLoader(test_set, batch_size)
    model = MLPResNet(784, hidden_dim)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    train_error = train_loss = None  # stay None when epochs == 0
    for _ in range(epochs):
        train_error, train_loss = epoch(train_loader, model, opt)
    test_error, test_loss = epoch(test_loader, model)
    return train_error, train_loss, test_error, test_loss


if __name__ == "__main__":
    print(train_mnist(data_dir="data"))
