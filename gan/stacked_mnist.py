"""Stacked MNIST: three MNIST digits stacked as the R, G and B channels, 1000 modes.

The mode-collapse benchmark of Metz et al. (2017, "Unrolled GANs", sec. 3.3.2), VEEGAN
(Srivastava et al. 2017, sec. 5.2) and PacGAN (Lin et al. 2018, sec. 4, Table 2). Each
image is (3, 28, 28): channel k holds a randomly drawn MNIST digit, so the triple of digits
(d_R, d_G, d_B) is one of 10^3 = 1000 modes, numbered 100 d_R + 10 d_G + d_B. The protocol
(PacGAN's code, fjxmlzn/PacGAN stacked_MNIST_experiments/VEEGAN_experiment: config.py and
model.py load_mnist, log_metrics):

  * data: TRAIN_COUNT = 128,000 stacked images, each channel an independent uniform draw
    from the 70,000 MNIST training and test digits;
  * scoring: EVAL_SAMPLES = 26,000 generated images; a pretrained MNIST classifier labels
    each channel; the modes covered are the distinct digit triples among them (a single
    sample covers its mode), and the KL divergence is KL(p || uniform) of the generated mode
    histogram p over the 1000 modes, sum_k p_k log(1000 p_k), in nats (PacGAN's "reverse
    KL"; 0 for an exactly uniform histogram, log 1000 = 6.91 for one mode).

Here the classifier is the shipped one (gan.metrics.load_classifier, 99.27% MNIST test
accuracy); images are NCHW in [-1, 1], the GAN convention.

    images, labels = load_digits("data/mnist")               # the 70,000 digits
    data, modes = stacked_mnist(images, labels, seed=0)      # (128000, 3, 28, 28), (128000,)
    mode_scores(load_classifier(), generated)   # {"modes_covered": ..., "kl_to_uniform": ...}
"""
import numpy as np

from needle.data.mnist import load_mnist

from .metrics import kl_to_uniform, predict

__all__ = ["load_digits", "stacked_mnist", "mode_ids", "channel_digits", "mode_scores",
           "N_MODES", "TRAIN_COUNT", "EVAL_SAMPLES"]

N_MODES = 1000
TRAIN_COUNT = 128000
EVAL_SAMPLES = 26000


def load_digits(data_dir="data/mnist"):
    """The 70,000 MNIST digits (training set then test set): images (70000, 28, 28) float32
    in [-1, 1] and labels (70000,) int64."""
    parts = [load_mnist(data_dir, train=train) for train in (True, False)]
    images = np.concatenate([p.images for p in parts]).reshape(-1, 28, 28) * 2 - 1
    labels = np.concatenate([p.labels for p in parts]).astype(np.int64)
    return np.ascontiguousarray(images, dtype=np.float32), labels


def stacked_mnist(images, labels, count=TRAIN_COUNT, seed=0):
    """`count` stacked images from digit `images` (M, 28, 28) with `labels` (M,).

    Each channel is an independent uniform draw (with replacement) of the M digits, from
    RandomState(seed), so the set is the same for the same seed. Returns (stacked
    (count, 3, 28, 28) float32, modes (count,) int64 in [0, 1000)).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"stacked_mnist: expected digit images (M, 28, 28) and labels (M,), "
                         f"got shapes {images.shape} and {labels.shape}")
    picks = np.random.RandomState(seed).randint(0, len(images), size=(int(count), 3))
    return (np.ascontiguousarray(images[picks], dtype=np.float32),
            mode_ids(labels[picks]))


def mode_ids(digits):
    """Digit triples (N, 3) (R, G, B) -> mode numbers 100 d_R + 10 d_G + d_B, (N,) int64."""
    digits = np.asarray(digits)
    if digits.ndim != 2 or digits.shape[1] != 3 or digits.size and (
            digits.min() < 0 or digits.max() > 9):
        raise ValueError(f"mode_ids: expected digit triples (N, 3) with digits 0-9, got "
                         f"shape {digits.shape}")
    return (digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]).astype(np.int64)


def channel_digits(classifier, images, batch_size=500):
    """The classifier's digit (argmax) for each channel of images (N, 3, 28, 28): (N, 3)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (3, 28, 28):
        raise ValueError(f"channel_digits: expected stacked images (N, 3, 28, 28), got "
                         f"shape {images.shape}")
    digits = [predict(classifier, images[:, k:k + 1], batch_size)[1].argmax(axis=1)
              for k in range(3)]
    return np.stack(digits, axis=1)


def mode_scores(classifier, images, batch_size=500):
    """Modes covered (of 1000) and KL(mode histogram || uniform) of stacked images
    (N, 3, 28, 28), as the protocol scores them (see the module docstring).

    Returns {"modes_covered": int, "n_modes": 1000, "kl_to_uniform": float (nats),
    "samples": N}."""
    modes = mode_ids(channel_digits(classifier, images, batch_size))
    histogram = np.bincount(modes, minlength=N_MODES)
    return {"modes_covered": int((histogram > 0).sum()), "n_modes": N_MODES,
            "kl_to_uniform": kl_to_uniform(histogram), "samples": int(len(modes))}
