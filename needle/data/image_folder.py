"""A folder of image files as a dataset: NCHW float32 batches in [-1, 1].

    train = ImageFolder("horses", image_size=64, hold_out=8)     # random crop + flip
    batch = train[np.arange(4)]                                   # (4, C, 64, 64)
    grid = train.held_out                                         # (8, C, 64, 64), centred
    test = ImageFolder("new_horses", image_size=64, train=False)  # centre crop only

Preprocessing follows pytorch-CycleGAN-and-pix2pix (load_size 286, crop_size 256), scaled to
`image_size`: for training, each image is resized so its shorter side is
load_size = round(image_size * 286 / 256), then every batch takes a random image_size crop
and flips it left-right with probability 1/2; for testing (and the held-out images), the
shorter side is resized to image_size and the centre is cropped. Unlike the authors, whose
"resize_and_crop" first squashes every image to a load_size square, the aspect ratio is kept:
a 300 x 200 photo is not stretched. Each image is decoded once (bicubic resize with Pillow);
training images are kept as the centred load_size square, so a batch's crops and flips are
one vectorised gather and the random offsets run over the central square of a non-square
image.

Channels: `channels=None` follows the images: 1 when every image is grayscale (single-band
files, and colour files whose three bands are equal), else 3 (grayscale files then repeat
their band). channels=1 on colour images takes the luma 0.299 R + 0.587 G + 0.114 B.

Randomness (crop offsets and flips) comes from NumPy's global RNG, as in needle.data's
transforms, so a seeded run reproduces and a checkpoint that saves the RNG resumes exactly.

Pillow is needed (`pip install Pillow`); needle itself imports this module only on use.
Errors are DataFileError (a ValueError) naming the folder or file: a folder that is missing,
unreadable or holds no images; an image file that is unreadable, corrupt, truncated or
claims more than MAX_IMAGE_PIXELS pixels; too few images to hold out.
"""
import os
import warnings

import numpy as np

from .dataset import Dataset
from .idx import DataFileError

__all__ = ["ImageFolder", "match_channels", "list_images", "read_images", "random_crop_flip",
           "centre_square", "load_size_for", "IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".pgm", ".ppm")
MAX_IMAGE_PIXELS = 8192 * 8192  # larger claims are taken for a corrupt header
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, as Pillow's convert("L")


def load_size_for(image_size):
    """The training resize target: pytorch-CycleGAN's 286 for a 256 crop, scaled."""
    return int(round(image_size * 286 / 256))


def list_images(folder):
    """Sorted names of the image files in `folder` (by extension; hidden files skipped)."""
    if not os.path.isdir(folder):
        raise DataFileError(f"image folder {folder!r} does not exist or is not a folder")
    try:
        listing = os.listdir(folder)
    except OSError as error:
        raise DataFileError(f"image folder {folder!r} cannot be read: "
                            f"{error.strerror or error}") from error
    names = sorted(name for name in listing
                   if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
                   and os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise DataFileError(f"image folder {folder!r} has no image files (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)})")
    return names


def _image_module():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("needle.data.ImageFolder reads images with Pillow: "
                          "pip install Pillow") from None
    return Image


def centre_square(picture, side):
    """A Pillow image as uint8 (side, side, channels): shorter side resized to `side`
    (bicubic, aspect ratio kept), then the centre square."""
    Image = _image_module()
    width, height = picture.size
    scale = side / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    picture = picture.resize(size, Image.BICUBIC)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    return np.asarray(picture.crop((left, top, left + side, top + side)), dtype=np.uint8)


def _decode(path, side):
    """One file as an RGB uint8 (side, side, 3) array: shorter side resized to `side`
    (bicubic, aspect ratio kept), then the centre square."""
    Image = _image_module()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                width, height = picture.size
                if width * height > MAX_IMAGE_PIXELS or min(width, height) < 1:
                    raise ValueError(f"its header claims {width} x {height} pixels")
                return centre_square(picture.convert("RGB"), side)
    except Exception as error:  # untrusted bytes: any decoder failure is a bad file
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        try:
            size = f"{os.path.getsize(path)} bytes"
        except OSError:
            size = "size unknown"
        raise DataFileError(f"cannot read image {path!r} ({size}): {reason}") from error


def _decode_all(folder, names, side):
    rgb = np.empty((len(names), side, side, 3), dtype=np.uint8)
    for i, name in enumerate(names):  # one decode per file: the reading itself is the cost
        rgb[i] = _decode(os.path.join(folder, name), side)
    return rgb


def _grayscale(rgb):
    """Per image: are its three bands equal (a grayscale image, whatever its file mode)?"""
    return (rgb[..., :1] == rgb[..., 1:]).all(axis=(1, 2, 3))


def _with_channels(rgb, channels):
    """(N, side, side, 3) uint8 -> (N, channels, side, side) uint8."""
    if channels == 1:
        luma = np.rint(rgb.astype(np.float64) @ LUMA).astype(np.uint8)[..., None]
        rgb = np.where(_grayscale(rgb)[:, None, None, None], rgb[..., :1], luma)
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


def _check_channels(channels):
    if channels not in (None, 1, 3):
        raise ValueError(f"image folder: channels must be 1, 3 or None (follow the images), "
                         f"got {channels!r}")


def read_images(folder, names, side, channels=None):
    """(uint8 array (N, C, side, side), C) of the named files in `folder`, each resized
    (shorter side to `side`) and centre-cropped; C follows the images when channels is None.
    """
    _check_channels(channels)
    rgb = _decode_all(folder, names, side)
    if channels is None:
        channels = 1 if _grayscale(rgb).all() else 3
    return _with_channels(rgb, channels), channels


def random_crop_flip(images, size, rng=np.random):
    """A random size x size crop of each (N, C, L, L) image, flipped left-right with
    probability 1/2: one gather for the batch. Draws (2, N) offsets, then N flips."""
    n, c, height, width = images.shape
    dy, dx = rng.randint(0, height - size + 1, n), rng.randint(0, width - size + 1, n)
    flip = rng.rand(n) < 0.5
    steps = np.arange(size)
    rows = dy[:, None] + steps
    cols = dx[:, None] + np.where(flip[:, None], steps[::-1], steps)
    return images[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def _to_float(images):
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1)


def _held_out_positions(count, hold_out):
    """`hold_out` indices spread evenly over the sorted listing (first and last included)."""
    return np.unique(np.linspace(0, count - 1, hold_out).round().astype(np.int64)) \
        if hold_out else np.zeros(0, np.int64)


class ImageFolder(Dataset):
    """The images of `folder` as NCHW float32 in [-1, 1] (see the module docstring).

    image_size: side of the square images served. train: random crop and flip of the
    load_size resize (default load_size_for(image_size)), else a centre crop. channels:
    1, 3 or None (follow the images). hold_out: images set apart (centre-cropped, never
    trained on) as `held_out`, with their `held_out_names`, e.g. for a sample grid; they
    are spread evenly over the sorted names. limit: keep at most this many of the rest.

    `dataset[i]` is one (C, S, S) image, `dataset[index_array]` and slices a batch
    (batch_indexable, so the DataLoader fetches a batch in one call).
    """

    batch_indexable = True

    def __init__(self, folder, image_size, channels=None, train=True, load_size=None,
                 hold_out=0, limit=None):
        super().__init__()
        _check_channels(channels)
        if image_size < 1:
            raise ValueError(f"ImageFolder: image_size must be >= 1, got {image_size}")
        self.folder, self.image_size, self.train = folder, int(image_size), train
        self.load_size = int(load_size or load_size_for(image_size)) if train \
            else self.image_size
        if self.load_size < self.image_size:
            raise ValueError(f"ImageFolder: load_size {self.load_size} is smaller than "
                             f"image_size {self.image_size}")
        names = list_images(folder)
        if hold_out and hold_out >= len(names):
            raise DataFileError(f"image folder {folder!r} has {len(names)} images; holding "
                                f"out {hold_out} for the samples leaves none to train on")
        held = set(_held_out_positions(len(names), hold_out).tolist())
        self.held_out_names = [name for i, name in enumerate(names) if i in held]
        self.names = [name for i, name in enumerate(names) if i not in held][:limit]
        train_rgb = _decode_all(folder, self.names, self.load_size)
        held_rgb = _decode_all(folder, self.held_out_names, self.image_size)
        if channels is None:  # over every file, held out or not: one folder, one layout
            channels = 1 if _grayscale(train_rgb).all() and _grayscale(held_rgb).all() else 3
        self.channels = channels
        self._images = _with_channels(train_rgb, channels)
        self.held_out = _to_float(_with_channels(held_rgb, channels))

    def __len__(self):
        return len(self._images)

    def __getitem__(self, index):
        single = np.isscalar(index)
        images = self._images[[index] if single else index]
        if self.train:
            images = random_crop_flip(images, self.image_size)
        images = _to_float(images)
        return images[0] if single else images


def match_channels(*folders):
    """Give ImageFolders read with channels=None one layout: when any is colour (3), the
    grayscale ones repeat their band (exact: their images are grayscale). Returns it."""
    channels = max(folder.channels for folder in folders)
    for folder in folders:
        if folder.channels != channels:
            folder._images = np.repeat(folder._images, channels, axis=1)
            folder.held_out = np.repeat(folder.held_out, channels, axis=1)
            folder.channels = channels
    return channels
