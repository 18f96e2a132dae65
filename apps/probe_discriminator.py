"""A trained DCGAN discriminator as a feature extractor: a linear classifier on its frozen
features with few labels, beside the same classifier on raw pixels.

    python -m apps.probe_discriminator --run runs/dcgan
    python -m apps.probe_discriminator --run runs/dcgan --labels 100 1000 --draws 5 --json

Radford et al. (2016, sec. 5.1) take every layer of the trained D, max-pool each layer's
maps to a 4 x 4 grid, flatten and concatenate them, and train a regularised linear
classifier on top. Here: D of a train_dcgan run (or a train_wgan_gp run on MNIST) from its
newest intact checkpoint (the "adversarial.discriminator." weights), in eval mode (BatchNorm
uses its running statistics), frozen. --layers all (the paper) takes the output of every
LeakyReLU of D.features, --layers last only D.features(x); --grid G max-pools each map to G x
G cells (adaptive pooling: cell i spans rows floor(i H / G) to ceil((i + 1) H / G), as
torch's adaptive_max_pool2d), --grid 0 keeps the maps whole. At 28 x 28 with --width 64:
64 x 14 x 14 and 128 x 7 x 7 maps, 3072 features with --grid 4.

The classifier is multinomial logistic regression with weight decay (L2 on the weights, not
the biases), on features standardised by the labelled digits' mean and standard deviation,
fitted by L-BFGS (scipy) on our loss and gradient:

    loss(W, b) = mean_i [logsumexp(x_i W + b) - (x_i W + b)_{y_i}] + wd / 2 * ||W||^2

With several --weight_decay values, 5-fold cross-validation (stratified; fewer folds when a
class has fewer than 5 labelled digits) on the labelled digits alone picks one (the test
digits are never looked at); the chosen value is reported. Labelled
digits: for each of --labels N (a multiple of 10), N / 10 of each class drawn without
replacement from the 60,000 MNIST training digits, --draws times (RandomState(--seed), the
draws listed in the output). Test: the first --test_count MNIST test digits. The same draws
serve the features and the pixels (784 values in [-1, 1]), so the two columns compare like
with like.

Output: a table (accuracy, mean +- standard deviation over the draws) or, with --json, one
JSON object; both are also written to RUN/probe.json. A folder that is not a run of D's apps
is a one-line error.
"""
import json
import math
import os
import sys

import numpy as np
import scipy.optimize

import needle as ndl
from gan import RunFolderError
from gan.models.dcgan import Discriminator
from needle import nn
from needle.fileio import atomic_write

from .cli import USER_ERRORS, AppParser, nonnegative_int, one_line, positive_int
from .common import DEFAULT_DATA_DIR, DEVICES, at_image_size, load_mnist_named, resolve_device
from .run_models import _load_weights, _state, open_run

__all__ = ["build_parser", "main", "load_discriminator", "discriminator_features",
           "adaptive_max_pool", "balanced_subset", "fit_logistic", "logistic_loss",
           "predict_logistic", "choose_weight_decay", "probe", "PROBE_NAME", "PROBE_APPS"]

APP = "probe_discriminator"
PROBE_NAME = "probe.json"
PROBE_APPS = ("train_dcgan", "train_wgan_gp")  # runs whose D is gan.models.dcgan's
FOLDS = 5


def build_parser():
    parser = AppParser(APP, __doc__)
    add = parser.add_argument
    add("--run", required=True,
        help="a train_dcgan (or train_wgan_gp --data mnist) run folder, or one checkpoint "
             "file of it")
    add("--data_dir", "--data-dir", default=DEFAULT_DATA_DIR,
        help="folder with the four MNIST .gz files")
    add("--labels", type=_multiple_of_ten, nargs="+", default=[100, 1000],
        help="labelled training digits per classifier (class-balanced: N / 10 per digit)")
    add("--draws", type=positive_int, default=3,
        help="independent labelled sets per --labels value (mean and std over them)")
    add("--seed", type=nonnegative_int, default=0, help="seed of the labelled sets' draws")
    add("--test_count", "--test-count", type=positive_int, default=10000,
        help="MNIST test digits scored")
    add("--layers", choices=("all", "last"), default="all",
        help="all: every LeakyReLU output of D.features (the paper); last: D.features(x)")
    add("--grid", type=nonnegative_int, default=4,
        help="max-pool each feature map to GRID x GRID cells (the paper: 4); 0: no pooling")
    add("--weight_decay", "--weight-decay", type=float, nargs="+",
        default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        help="L2 weight(s) of the classifier; several: cross-validation on the labelled "
             "digits picks one")
    add("--max_iter", "--max-iter", type=positive_int, default=500,
        help="L-BFGS iterations per fit")
    add("--batch_size", "--batch-size", type=positive_int, default=500,
        help="images per forward pass of D")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy",
        help="cpu_numpy: NumPy; cpu: the course's flat-memory device; cuda: CuPy on a GPU")
    add("--json", action="store_true", help="print the results as one JSON object")
    add("--debug", action="store_true", help="show the traceback of an error")
    parser.after_parsing.append(_check)
    return parser


def _multiple_of_ten(text):
    value = positive_int(text)
    if value % 10:
        import argparse
        raise argparse.ArgumentTypeError(f"must be a multiple of 10 (the same number of each "
                                         f"digit), got {text}")
    return value


def _check(parser, args, argv):
    if any(not (math.isfinite(w) and w >= 0) for w in args.weight_decay):
        parser.error(f"argument --weight_decay: must be finite numbers >= 0, got "
                     f"{args.weight_decay}")


# ---- the discriminator and its features ---------------------------------------------------
def load_discriminator(run, device=None):
    """The run's D (gan.models.dcgan.Discriminator) in eval mode, built as its app built it
    (--width, --image_size, --spectral_norm, --minibatch_std; BatchNorm unless the app or
    spectral normalisation leaves it out) with its checkpoint's weights."""
    if run.app not in PROBE_APPS or run.is_points:
        what = "2-D points" if run.is_points else f"a {run.app} run"
        raise RunFolderError(f"{run.folder} is {what}; the probe takes the image "
                             f"discriminator of a {' or '.join(PROBE_APPS)} (MNIST) run")
    args = run.args
    spectral = bool(args.get("spectral_norm"))
    norm = "none" if spectral or run.app == "train_wgan_gp" else "batch"
    D = Discriminator(channels=1, image_size=args.get("image_size") or 28,
                      width=args.get("width") or 64, norm=norm, device=device,
                      minibatch_std=bool(args.get("minibatch_std")))
    if spectral:
        from gan.spectral_norm import spectral_norm
        spectral_norm(D)
    return _load_weights(D, run, _state(run, "adversarial.discriminator."), "discriminator")


def adaptive_max_pool(maps, grid):
    """(N, C, H, W) -> (N, C, grid, grid): the maximum over each cell, cell i spanning rows
    floor(i H / grid) to ceil((i + 1) H / grid) (and the same for columns)."""
    n, c, h, w = maps.shape
    out = np.empty((n, c, grid, grid), dtype=maps.dtype)
    for i in range(grid):
        rows = slice(i * h // grid, -(-(i + 1) * h // grid))
        for j in range(grid):
            columns = slice(j * w // grid, -(-(j + 1) * w // grid))
            out[:, :, i, j] = maps[:, :, rows, columns].max(axis=(2, 3))
    return out


def discriminator_features(D, images, layers="all", grid=4, batch_size=500):
    """The frozen features (N, dims) float32 of NCHW `images` at D's size: the output of
    every LeakyReLU in D.features (layers="all") or of D.features itself ("last"), each map
    max-pooled to grid x grid (grid=0: whole), flattened and concatenated."""
    modules = list(D.features.modules)
    taps = [i for i, m in enumerate(modules) if isinstance(m, nn.LeakyReLU)] \
        if layers == "all" else [len(modules) - 1]
    device = next(iter(D.parameters())).device
    rows = []
    training = D.training
    D.eval()
    try:
        with ndl.no_grad():
            for start in range(0, len(images), batch_size):
                x = ndl.Tensor(images[start:start + batch_size], device=device,
                               requires_grad=False)
                parts = []
                for i, module in enumerate(modules):
                    x = module(x)
                    if i in taps:
                        maps = x.numpy()
                        maps = adaptive_max_pool(maps, grid) if grid else maps
                        parts.append(maps.reshape(len(maps), -1))
                rows.append(np.concatenate(parts, axis=1).astype(np.float32))
    finally:
        D.train(training)
    return np.concatenate(rows)


# ---- the linear classifier ------------------------------------------------------------------
def logistic_loss(W, b, X, y, weight_decay):
    """(loss, dW, db) of multinomial logistic regression with L2 weight decay on W:
    mean_i [logsumexp(x_i W + b) - (x_i W + b)_{y_i}] + weight_decay / 2 * ||W||^2."""
    logits = X @ W + b
    top = logits.max(axis=1, keepdims=True)
    exps = np.exp(logits - top)
    sums = exps.sum(axis=1, keepdims=True)
    n = len(X)
    picked = logits[np.arange(n), y]
    loss = float(np.mean(np.log(sums[:, 0]) + top[:, 0] - picked)
                 + weight_decay / 2 * np.vdot(W, W))
    residual = exps / sums
    residual[np.arange(n), y] -= 1
    residual /= n
    return loss, X.T @ residual + weight_decay * W, residual.sum(axis=0)


class _Standardise:
    """x -> (x - mean) / std with the statistics of the labelled digits (std 0 -> 1)."""

    def __init__(self, X):
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.std = np.where(std > 1e-8, std, 1.0)

    def __call__(self, X):
        return (X - self.mean) / self.std


def fit_logistic(X, y, weight_decay, classes=10, max_iter=500):
    """(W (dims, classes), b (classes,), standardise) minimising logistic_loss on
    standardised X, from zeros, by scipy's L-BFGS (float64)."""
    standardise = _Standardise(np.asarray(X, dtype=np.float64))
    Z = standardise(np.asarray(X, dtype=np.float64))
    dims = Z.shape[1]
    y = np.asarray(y, dtype=np.int64)

    def objective(theta):
        W, b = theta[:-classes].reshape(dims, classes), theta[-classes:]
        loss, dW, db = logistic_loss(W, b, Z, y, weight_decay)
        return loss, np.concatenate([dW.ravel(), db])

    result = scipy.optimize.minimize(objective, np.zeros(dims * classes + classes), jac=True,
                                     method="L-BFGS-B", options={"maxiter": max_iter})
    theta = result.x
    return theta[:-classes].reshape(dims, classes), theta[-classes:], standardise


def predict_logistic(model, X, chunk=2000):
    """The predicted class of each row of X under fit_logistic's `model`."""
    W, b, standardise = model
    return np.concatenate([np.zeros(0, np.int64)] + [
        np.argmax(standardise(np.asarray(X[i:i + chunk], np.float64)) @ W + b, axis=1)
        for i in range(0, len(X), chunk)])


def choose_weight_decay(X, y, weight_decays, max_iter=500):
    """The weight decay with the best accuracy over k stratified folds of (X, y), k = FOLDS
    or fewer when a class has fewer members, the first of them on a tie; a single value is
    returned as it is."""
    if len(weight_decays) == 1:
        return weight_decays[0]
    y = np.asarray(y)
    labels, sizes = np.unique(y, return_counts=True)
    folds = min(FOLDS, int(sizes.min()))
    if folds < 2:
        raise ValueError(f"choose_weight_decay: cross-validation needs 2 or more labelled "
                         f"digits of each class, got {sizes.min()}; give one --weight_decay")
    fold = np.empty(len(y), dtype=np.int64)
    for label in labels:  # each class's members dealt round the folds
        members = np.flatnonzero(y == label)
        fold[members] = np.arange(len(members)) % folds
    scores = []
    for weight_decay in weight_decays:
        correct = 0
        for k in range(folds):
            train, held = fold != k, fold == k
            model = fit_logistic(X[train], y[train], weight_decay, max_iter=max_iter)
            correct += int((predict_logistic(model, X[held]) == y[held]).sum())
        scores.append(correct)
    return weight_decays[int(np.argmax(scores))]


def balanced_subset(labels, count, rng, classes=10):
    """`count` indices, count / classes of each label, drawn without replacement (sorted)."""
    per_class = count // classes
    picks = []
    for label in range(classes):
        members = np.flatnonzero(np.asarray(labels) == label)
        if len(members) < per_class:
            raise ValueError(f"balanced_subset: {per_class} digits of class {label} asked "
                             f"for, only {len(members)} available")
        picks.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picks))


# ---- the probe -----------------------------------------------------------------------------
def probe(representations, train_labels, test_labels, label_counts, draws, seed,
          weight_decays, max_iter=500):
    """Accuracies of the linear classifier on each representation.

    representations: {name: (features of the training digits as a callable(indices) ->
    (len(indices), dims), test features (T, dims))}; every representation gets the same
    draws of labelled digits. Returns {name: {str(count): {"mean", "std", "accuracies",
    "weight_decays"}}} (one accuracy and chosen weight decay per draw)."""
    rng = np.random.RandomState(seed)
    subsets = {count: [balanced_subset(train_labels, count, rng) for _ in range(draws)]
               for count in label_counts}
    results = {}
    for name, (train_features, test_features) in representations.items():
        results[name] = {}
        for count, draws_of_count in subsets.items():
            accuracies, chosen = [], []
            for index in draws_of_count:
                X, y = train_features(index), np.asarray(train_labels)[index]
                weight_decay = choose_weight_decay(X, y, weight_decays, max_iter)
                model = fit_logistic(X, y, weight_decay, max_iter=max_iter)
                accuracies.append(float(np.mean(predict_logistic(model, test_features)
                                                == test_labels)))
                chosen.append(weight_decay)
            results[name][str(count)] = {"mean": float(np.mean(accuracies)),
                                         "std": float(np.std(accuracies)),
                                         "accuracies": accuracies, "weight_decays": chosen}
    return results


def run_probe(args, device):
    run = open_run(args.run)
    D = load_discriminator(run, device)
    train = load_mnist_named(args.data_dir, train=True)
    test = load_mnist_named(args.data_dir, train=False)
    count = min(args.test_count, len(test))
    size = D.image_size

    def images(dataset, index):
        return at_image_size(dataset.images[index].reshape(-1, 1, 28, 28) * 2 - 1, size)

    def features(dataset, index):
        return discriminator_features(D, images(dataset, index), args.layers, args.grid,
                                      args.batch_size)

    test_index = np.arange(count)
    pixels_test = test.images[:count] * 2 - 1
    representations = {
        "features": (lambda index: features(train, index), features(test, test_index)),
        "pixels": (lambda index: train.images[index] * 2 - 1, pixels_test)}
    dims = {"features": int(representations["features"][1].shape[1]), "pixels": 784}
    results = probe(representations, train.labels.astype(np.int64),
                             test.labels[:count].astype(np.int64), args.labels, args.draws,
                             args.seed, args.weight_decay, args.max_iter)
    return {"app": run.app, "run": run.folder, "checkpoint": run.checkpoint, "step": run.step,
            "layers": args.layers, "grid": args.grid, "dims": dims, "test_count": count,
            "draws": args.draws, "seed": args.seed, "weight_decay_grid": args.weight_decay,
            "results": results}, run


def table(report):
    """The readable lines of a probe report."""
    pooled = f"max-pooled to {report['grid']} x {report['grid']}" if report["grid"] \
        else "not pooled"
    lines = [f"{APP}: {report['app']} run {report['run']}, step {report['step']}: D's "
             f"{report['layers']} layers ({pooled}, {report['dims']['features']} features) "
             f"vs raw pixels (784), linear classifier, {report['test_count']} MNIST test "
             f"digits, {report['draws']} draws",
             f"{'labels':>8}  {'D features':>18}  {'pixels':>18}"]
    for count in report["results"]["features"]:
        cells = []
        for name in ("features", "pixels"):
            r = report["results"][name][count]
            cells.append(f"{100 * r['mean']:6.2f}% +- {100 * r['std']:4.2f}".rjust(18))
        lines.append(f"{count:>8}  {cells[0]}  {cells[1]}")
    return lines


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        report, run = run_probe(args, device)
        out = atomic_write(os.path.join(run.folder, PROBE_NAME),
                           json.dumps(report, indent=1) + "\n")
    except USER_ERRORS as error:
        if args.debug:
            raise
        sys.exit(f"{APP}: {one_line(error)}")
    if args.json:
        print(json.dumps(report))
    else:
        for line in table(report):
            print(line)
        print(f"{APP}: results in {out}")
    return report


if __name__ == "__main__":
    main()
