"""The MNIST classifier whose feature space the GAN metrics live in (see gan/metrics.py).

A small CNN trained by `python -m apps.train_classifier` (which also teaches it to be
unsure about noise images); the shipped weights are gan/weights/mnist_classifier.safetensors.
Input is NCHW in [-1, 1], the GAN image convention, so generated images need no rescaling.
"""
from needle import nn

__all__ = ["MNISTClassifier", "FEATURE_DIM", "NUM_CLASSES"]

FEATURE_DIM = 128
NUM_CLASSES = 10


class MNISTClassifier(nn.Module):
    """images (N, 1, 28, 28) in [-1, 1] -> logits (N, 10); `features` gives the 128-d
    penultimate activations (after the ReLU), the space FID is measured in."""

    def __init__(self, width=32, feature_dim=FEATURE_DIM, device=None, dtype="float32"):
        super().__init__()
        self.feature_dim = feature_dim
        kw = dict(device=device, dtype=dtype)
        w1, w2 = width, 2 * width
        # Convs feeding a BatchNorm need no bias (BN's shift replaces it). The first conv
        # already halves the size: a 28x28 stage would be the costliest part of a needle
        # step (elementwise passes over N x w1 x 784 values) and is not needed for 99%.
        self.body = nn.Sequential(
            nn.Conv2d(1, w1, 3, stride=2, padding=1, bias=False, **kw),
            nn.BatchNorm2d(w1, **kw), nn.ReLU(),
            # state size: (N, w1, 14, 14)
            nn.Conv2d(w1, w2, 3, padding=1, bias=False, **kw), nn.BatchNorm2d(w2, **kw),
            nn.ReLU(),
            # state size: (N, w2, 14, 14)
            nn.Conv2d(w2, w2, 3, stride=2, padding=1, bias=False, **kw),
            nn.BatchNorm2d(w2, **kw), nn.ReLU(),
            # state size: (N, w2, 7, 7)
            nn.Flatten(),
            # BatchNorm1d keeps every feature alive: without it Adam left 36 to 73 of the 128
            # ReLU units dead (constant 0), dimensions wasted for the Frechet distance.
            nn.Linear(w2 * 7 * 7, feature_dim, bias=False, **kw),
            nn.BatchNorm1d(feature_dim, **kw), nn.ReLU())
        # state size: (N, feature_dim)
        self.head = nn.Linear(feature_dim, NUM_CLASSES, **kw)

    def features(self, x):
        if len(x.shape) != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"MNISTClassifier: expected images of shape (N, 1, 28, 28), "
                             f"got {x.shape}")
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))
