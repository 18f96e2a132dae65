"""Paired data for image-to-image translation (pix2pix): an input A and its target B.

The default task comes from MNIST: A is a digit's outline, B the digit (`mnist_pairs`). The
outline is the thresholded external morphological gradient of the digit, on its [0, 1]
scale (background 0, ink 1):

    gradient = (max over the 3x3 neighbourhood) - (the pixel itself)
    outline  = gradient > 0.5          (outside the image counts as background)

drawn as +1 on -1, the GAN image convention: a one-pixel contour just outside the stroke,
the stroke itself left blank, so G has to fill it in; deterministic, nothing learned.
scipy.ndimage.grey_dilation (size 3x3, mode "constant", cval 0) minus the image gives the
same gradient.

Image files come in the two pix2pix conventions (pytorch-CycleGAN-and-pix2pix):

    PairedFolder.side_by_side(folder, ...)   each file holds A | B side by side, split at
                                             the middle (their "aligned" datasets; an odd
                                             width is an error, not a guess)
    PairedFolder.two_folders(dir_a, dir_b)   A/name and B/name, paired by file name

Both are read as needle.data.ImageFolder reads one folder: each image (each half) resized so
its shorter side is load_size (default round(image_size * 286 / 256), the authors' 286 for
256) and centre-cropped to that square; every training batch takes one random image_size
crop and left-right flip per pair, the same for A and B (the paper's "random jitter"), drawn
from NumPy's global RNG, which checkpoints save. `hold_out` pairs, spread evenly over the
sorted names, are set apart centre-cropped at image_size (never trained on): the held-out
split. Channels follow the images, for A and B separately: 1 when every image of that side
is grayscale, else 3. Errors are DataFileError naming the folder or file: a missing folder
or one without images, names in one folder without a match in the other, a pair whose two
images differ in size, an unreadable or corrupt file, too few pairs to hold out.

Batches: gan.batches.Shuffled(A, B) on arrays (MNIST) or PairedBatches(folder, batch_size)
on a PairedFolder; either gives (A, B) batches in a new order each epoch.
"""
import os
import warnings

import numpy as np

from needle.data.idx import DataFileError
# ImageFolder's own helpers, so pairs are read exactly as one folder is (one implementation)
from needle.data.image_folder import (MAX_IMAGE_PIXELS, _grayscale, _to_float, _with_channels,
                                      centre_square, list_images, load_size_for,
                                      random_crop_flip)

from .batches import Shuffled

__all__ = ["edge_map", "mnist_pairs", "PairedFolder", "PairedBatches"]


# ---- MNIST: outline -> digit -------------------------------------------------------------
def _dilate_3x3(images):
    """The max over each pixel's 3x3 neighbourhood, outside the image counting as 0: nine
    shifted copies of the padded batch, no loop over pixels."""
    h, w = images.shape[2:]
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = images.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(out, padded[:, :, dy:dy + h, dx:dx + w], out=out)
    return out


def edge_map(images):
    """The outline of NCHW images in [-1, 1] (background -1): +1 where the 3x3 external
    morphological gradient exceeds half the [0, 1] range, -1 elsewhere (see the module
    docstring)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"edge_map: expected NCHW images, got shape {images.shape}")
    unit = (images + 1) / 2  # [0, 1], background 0
    return np.where(_dilate_3x3(unit) - unit > 0.5, np.float32(1), np.float32(-1))


def mnist_pairs(train, test, limit=None, held_out=1000):
    """(train_A, train_B), (test_A, test_B, test_labels) from loaded MNIST datasets
    (needle.data.load_mnist): A the edge maps, B the digits, NCHW float32 in [-1, 1]; the
    first `limit` training digits (default all) and the first `held_out` test digits."""
    count = len(train) if limit is None else min(limit, len(train))
    held_out = min(held_out, len(test))
    digits = train.images[:count].reshape(-1, 1, 28, 28).astype(np.float32) * 2 - 1
    test_digits = test.images[:held_out].reshape(-1, 1, 28, 28).astype(np.float32) * 2 - 1
    return ((edge_map(digits), digits),
            (edge_map(test_digits), test_digits, test.labels[:held_out].astype(np.int64)))


# ---- image files -------------------------------------------------------------------------
def _open(path):
    """A Pillow image of `path` in RGB, its header checked; any failure a DataFileError."""
    from PIL import Image  # Pillow, as needle.data.ImageFolder

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                width, height = picture.size
                if width * height > MAX_IMAGE_PIXELS or min(width, height) < 1:
                    raise ValueError(f"its header claims {width} x {height} pixels")
                return picture.convert("RGB")
    except Exception as error:  # untrusted bytes: any decoder failure is a bad file
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise DataFileError(f"cannot read image {path!r}: {reason}") from error


def _split(path):
    """The left and right halves of a side-by-side file."""
    picture = _open(path)
    width, height = picture.size
    if width % 2:
        raise DataFileError(f"image {path!r} is {width} x {height}: a side-by-side pair "
                            "(A | B) has an even width")
    half = width // 2
    return picture.crop((0, 0, half, height)), picture.crop((half, 0, width, height))


def _both(path_a, path_b):
    """The images of a two-folder pair, which must have the same size."""
    a, b = _open(path_a), _open(path_b)
    if a.size != b.size:
        raise DataFileError(f"paired images differ in size: {path_a!r} is {a.size[0]} x "
                            f"{a.size[1]}, {path_b!r} is {b.size[0]} x {b.size[1]}")
    return a, b


def _matched_names(dir_a, dir_b):
    names_a, names_b = list_images(dir_a), list_images(dir_b)
    only_a, only_b = sorted(set(names_a) - set(names_b)), sorted(set(names_b) - set(names_a))
    if only_a or only_b:
        def shown(names):
            return ", ".join(names[:3]) + (f", ... {len(names) - 3} more" if len(names) > 3
                                          else "")
        parts = [f"{len(names)} in {folder!r} without a match in {other!r} ({shown(names)})"
                 for names, folder, other in ((only_a, dir_a, dir_b), (only_b, dir_b, dir_a))
                 if names]
        raise DataFileError(f"paired folders: images are paired by file name, but "
                            f"{'; '.join(parts)}")
    return names_a


class PairedFolder:
    """Pairs (A, B) of image files as NCHW float32 in [-1, 1] (see the module docstring).

    Build with PairedFolder.side_by_side(folder, ...) or PairedFolder.two_folders(dir_a,
    dir_b, ...). image_size: side of the square images served; load_size: the training
    resize (default load_size_for(image_size)); hold_out: pairs set apart as `held_out_A`,
    `held_out_B` (with their `held_out_names`); limit: keep at most this many of the rest;
    channels_a, channels_b: 1, 3 or None (follow the images).

    `folder[index_array]` is a training batch (A, B): one random crop and flip per pair,
    the same for both images; `names` are the training pairs' names.
    """

    def __init__(self, names, read_pair, image_size, load_size=None, hold_out=0, limit=None,
                 channels_a=None, channels_b=None, where=""):
        self.image_size = int(image_size)
        self.load_size = int(load_size or load_size_for(image_size))
        if channels_a not in (None, 1, 3) or channels_b not in (None, 1, 3):
            raise ValueError(f"PairedFolder: channels must be 1, 3 or None (follow the "
                             f"images), got {channels_a!r} and {channels_b!r}")
        if self.image_size < 1 or self.load_size < self.image_size:
            raise ValueError(f"PairedFolder: need 1 <= image_size <= load_size, got "
                             f"image_size {self.image_size}, load_size {self.load_size}")
        if hold_out and hold_out >= len(names):
            raise DataFileError(f"{where} has {len(names)} pairs; holding out {hold_out} "
                                "leaves none to train on")
        held = set(np.unique(np.linspace(0, len(names) - 1, hold_out).round().astype(int))
                   .tolist()) if hold_out else set()
        self.held_out_names = [name for i, name in enumerate(names) if i in held]
        self.names = [name for i, name in enumerate(names) if i not in held][:limit]
        train = self._decode(read_pair, self.names, self.load_size)
        test = self._decode(read_pair, self.held_out_names, self.image_size)
        # channels per side, over every file of that side (held out or not)
        self.channels = [given or (1 if _grayscale(train[side]).all()
                                   and _grayscale(test[side]).all() else 3)
                         for side, given in enumerate((channels_a, channels_b))]
        self.channels_a, self.channels_b = self.channels
        self._pairs = np.concatenate([_with_channels(rgb, c) for rgb, c
                                      in zip(train, self.channels)], axis=1)
        self.held_out_A, self.held_out_B = (_to_float(_with_channels(rgb, c)) for rgb, c
                                            in zip(test, self.channels))

    @staticmethod
    def _decode(read_pair, names, side):
        rgb = np.empty((2, len(names), side, side, 3), dtype=np.uint8)
        for i, name in enumerate(names):  # one decode per file: the reading is the cost
            for half, picture in enumerate(read_pair(name)):
                rgb[half, i] = centre_square(picture, side)
        return rgb

    @classmethod
    def side_by_side(cls, folder, image_size, **options):
        """Pairs from the files of `folder`, A the left half of each, B the right."""
        return cls(list_images(folder), lambda name: _split(os.path.join(folder, name)),
                   image_size, where=f"image folder {folder!r}", **options)

    @classmethod
    def two_folders(cls, dir_a, dir_b, image_size, **options):
        """Pairs dir_a/name, dir_b/name over the names both folders hold."""
        return cls(_matched_names(dir_a, dir_b),
                   lambda name: _both(os.path.join(dir_a, name), os.path.join(dir_b, name)),
                   image_size, where=f"paired folders {dir_a!r} and {dir_b!r}", **options)

    def __len__(self):
        return len(self._pairs)

    def __getitem__(self, index):
        pairs = _to_float(random_crop_flip(self._pairs[index], self.image_size))
        return pairs[:, :self.channels_a], pairs[:, self.channels_a:]


class PairedBatches(Shuffled):
    """gan.batches.Shuffled over a paired dataset (a PairedFolder): `pairs[index]` gives
    the (A, B) batch, crops and flips drawn when the batch is taken."""

    def __init__(self, pairs, batch_size):
        super().__init__(pairs, batch_size=batch_size)

    def batch(self, position):
        return self.arrays[0][self.order[position * self.batch_size:
                                         (position + 1) * self.batch_size]]
