"""Image transforms on one H x W x C NumPy image (COURSE_API.md section 8).

All randomness comes from NumPy's global RNG, and each call draws exactly as the course
does, even when the draw leads to no change: seeded runs reproduce the course's golden values.
"""
import numpy as np

__all__ = ["Transform", "RandomFlipHorizontal", "RandomCrop", "Normalize"]


class Transform:
    """A callable on one H x W x C image.

    `batchable = True` says that calling it once on an (N, H, W, C) batch gives the same
    result as calling it on each image; datasets then transform a whole batch in one call.
    Random transforms are not batchable: their RNG draws are per image, in item order.
    """

    batchable = False

    def __call__(self, img):
        raise NotImplementedError()


class RandomFlipHorizontal(Transform):
    """Flip the image left-right (axis 1) with probability p; one np.random.rand() per call."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        flip_img = np.random.rand() < self.p
        return img[:, ::-1, :] if flip_img else img


class RandomCrop(Transform):
    """Zero-pad H and W by `padding`, then take the H x W window shifted by (sx, sy).

    (sx, sy) = np.random.randint(-padding, padding + 1, size=2), drawn on every call; sx
    shifts rows (axis 0) and sy columns (axis 1), the course's verified convention.
    """

    def __init__(self, padding=3):
        self.padding = padding

    def __call__(self, img):
        shift_x, shift_y = np.random.randint(low=-self.padding, high=self.padding + 1, size=2)
        pad = self.padding
        height, width = img.shape[0], img.shape[1]
        padded = np.pad(img, ((pad, pad), (pad, pad)) + ((0, 0),) * (img.ndim - 2))
        return padded[pad + shift_x:pad + shift_x + height, pad + shift_y:pad + shift_y + width]


class Normalize(Transform):
    """(x - mean) / std, per channel (the last axis) or for all; keeps the image's dtype.

    Normalize(0.5, 0.5) maps MNIST's [0, 1] pixels to [-1, 1], the range of a tanh generator.
    """

    batchable = True

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero, got {std}")

    def __call__(self, img):
        # Cast the statistics, not the image: a float64 mean would promote float32 data.
        dtype = img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32
        return (img.astype(dtype, copy=False) - self.mean.astype(dtype)) \
            / self.std.astype(dtype)
