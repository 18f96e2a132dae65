"""A shifted MNIST domain for domain adaptation, built deterministically from the bundled data.

MNIST-M (Ganin & Lempitsky 2015) blends each MNIST digit onto a colour patch of a photograph
by the absolute difference |patch - digit|. No photographs ship here, so the patches are
textures made from crops of *other* MNIST digits: a 7 x 7 crop enlarged 4 times (bilinear)
into smooth blobs and bands much wider than a stroke, painted in two random colours. For
digit i (pixels m in [0, 1], 28 x 28) of a split of M digits (the pool the crops are cut
from is the split itself), from RandomState(seed), for all M digits at once, in this order
(shift_parameters(M, M, seed); shift_split):

    pieces  = rng.randint(0, M, N)               the pool digit of each image, N = M
    offsets = rng.randint(0, 22, (N, 2))         its 7 x 7 crop's top-left corner (y, x)
    colours = rng.uniform(0, 1, (N, 2, 3))       two RGB colours per image

    texture t = the crop pool[pieces[i]][y:y + 7, x:x + 7] enlarged to 28 x 28 by bilinear
                interpolation: output pixel j samples the crop at (j + 0.5) / 4 - 0.5,
                clamped to [0, 6] (torch's interpolate(..., "bilinear", align_corners=False))
    background b_c = colours[i, 0, c] * (1 - t) + colours[i, 1, c] * t    (c = R, G, B)
    shifted_c = |b_c - m|, then scaled to [-1, 1]: 2 * shifted_c - 1

So the target images are RGB (3, 28, 28): a two-colour background, with the digit drawn in
the inverted background colour (where m = 1 the pixel is 1 - b, where m = 0 it is b): whether
the ink is lighter or darker than the background varies from image to image and channel to
channel. Where a background colour is near grey (0.5 in every channel) the digit has little
contrast, as in MNIST-M. A crop may (with probability 1/M) come from the digit itself;
nothing excludes it.

The domain-adaptation task (apps.train_dann):
    source       MNIST training digits with their labels, grey, repeated into 3 channels
    target       the shifted training digits (seed), *without* labels
    evaluation   the shifted test digits (seed + 1, textures from test digits) with labels;
                 the MNIST test digits for the source accuracy

    domains = load_domains("data/mnist", seed=0, limit=10000)
    domains.source_images, domains.source_labels, domains.target_images
    domains.test_target_images, domains.test_labels, domains.test_source_images

Images are NCHW float32 in [-1, 1], the project's convention.
"""
import dataclasses

import numpy as np

from needle.data.mnist import load_mnist

__all__ = ["shift_parameters", "shifted_digits", "shift_split", "enlarge", "to_rgb",
           "load_domains", "Domains", "CROP", "ZOOM"]

CROP, ZOOM = 7, 4  # a 7 x 7 crop, enlarged 4 times: the 28 x 28 background


def shift_parameters(count, pool_size, seed):
    """The draws that define `count` shifted images with textures from a pool of
    `pool_size` digits: {"pieces": (count,), "offsets": (count, 2), "colours": (count, 2,
    3)} from RandomState(seed), in the order the module docstring gives."""
    if count < 0 or pool_size < 1:
        raise ValueError(f"shift_parameters: need count >= 0 and a pool of >= 1 digits, got "
                         f"count {count}, pool_size {pool_size}")
    rng = np.random.RandomState(seed)
    return {"pieces": rng.randint(0, pool_size, count),
            "offsets": rng.randint(0, 28 - CROP + 1, (count, 2)),
            "colours": rng.uniform(0, 1, (count, 2, 3)).astype(np.float32)}


def _digits(name, array):
    """(N, 28, 28) float32 in [0, 1] from (N, 28, 28), (N, 1, 28, 28) or (N, 784)."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2 and array.shape[1] == 784:
        array = array.reshape(-1, 28, 28)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise ValueError(f"shifted_digits: {name} must be MNIST digits (N, 28, 28), got "
                         f"shape {np.shape(array)}")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"shifted_digits: {name} must hold pixel values in [0, 1] (MNIST's "
                         f"intensities), got [{array.min():.3g}, {array.max():.3g}]")
    return array


def enlarge(crops):
    """(N, 7, 7) -> (N, 28, 28) by bilinear interpolation: output pixel j samples the crop
    at (j + 0.5) / ZOOM - 0.5, clamped to the crop (align_corners=False)."""
    where = np.clip((np.arange(CROP * ZOOM) + 0.5) / ZOOM - 0.5, 0, CROP - 1)
    low = np.floor(where).astype(np.int64)
    high = np.minimum(low + 1, CROP - 1)
    w = (where - low).astype(np.float32)
    rows = crops[:, low] * (1 - w)[:, None] + crops[:, high] * w[:, None]      # (N, 28, 7)
    return rows[:, :, low] * (1 - w) + rows[:, :, high] * w                   # (N, 28, 28)


def shifted_digits(digits, pool, params):
    """The shifted images (N, 3, 28, 28) float32 in [-1, 1] of `digits` (N, 28, 28) in
    [0, 1], with texture crops cut from `pool` (M, 28, 28) in [0, 1], as the draws `params`
    (shift_parameters(N, M, seed), or its first N rows) say (see the module docstring)."""
    digits, pool = _digits("digits", digits), _digits("pool", pool)
    n = len(digits)
    pieces, offsets, colours = (np.asarray(params[k]) for k in ("pieces", "offsets", "colours"))
    if pieces.shape != (n,) or offsets.shape != (n, 2) or colours.shape != (n, 2, 3):
        raise ValueError(f"shifted_digits: params hold draws for {len(pieces)} images, "
                         f"expected {n} (pieces (N,), offsets (N, 2), colours (N, 2, 3))")
    if n and (pieces.max() >= len(pool) or offsets.max() > 28 - CROP or offsets.min() < 0):
        raise ValueError(f"shifted_digits: params cut crops outside the pool of {len(pool)} "
                         "digits or outside the 28 x 28 images")
    span = np.arange(CROP)
    crops = pool[pieces[:, None, None], (offsets[:, 0:1] + span)[:, :, None],
                 (offsets[:, 1:2] + span)[:, None, :]]                        # (N, 7, 7)
    t = enlarge(crops)[:, None]                                               # (N, 1, 28, 28)
    low, high = colours[:, 0], colours[:, 1]                                  # (N, 3) each
    background = low[:, :, None, None] * (1 - t) + high[:, :, None, None] * t
    shifted = np.abs(background - digits[:, None])
    return np.ascontiguousarray(shifted * 2 - 1, dtype=np.float32)


def shift_split(digits, seed, count=None):
    """The first `count` (default all) of a split's `digits` (M, 28, 28) in [0, 1] shifted,
    textures cut from the whole split, with the draws of shift_parameters(M, M, seed): image
    i is the same whatever `count` is."""
    digits = _digits("digits", digits)
    params = shift_parameters(len(digits), len(digits), seed)
    count = len(digits) if count is None else min(int(count), len(digits))
    return shifted_digits(digits[:count], digits, {k: v[:count] for k, v in params.items()})


def to_rgb(digits):
    """MNIST digits (N, 28, 28) in [0, 1] as grey RGB images (N, 3, 28, 28) in [-1, 1]."""
    grey = _digits("digits", digits)[:, None] * 2 - 1
    return np.ascontiguousarray(np.repeat(grey, 3, axis=1), dtype=np.float32)


@dataclasses.dataclass
class Domains:
    """The source (labelled), the target (unlabelled) and the two test sets."""

    source_images: np.ndarray       # (N, 3, 28, 28) MNIST training digits, grey RGB
    source_labels: np.ndarray       # (N,) int64
    target_images: np.ndarray       # (N, 3, 28, 28) the same digits shifted; no labels
    test_source_images: np.ndarray  # (T, 3, 28, 28) MNIST test digits, grey RGB
    test_target_images: np.ndarray  # (T, 3, 28, 28) the test digits shifted
    test_labels: np.ndarray         # (T,) int64, the labels of both test sets


def load_domains(data_dir, seed=0, limit=None, test_limit=None, load=load_mnist):
    """The Domains from the MNIST files in `data_dir`: the first `limit` training digits
    (all by default) as source and, shifted with `seed` (textures from all training
    digits), as target; the first `test_limit` test digits (all by default) shifted with
    seed + 1, textures from the test digits. Image i is the same whatever the limits.
    `load(data_dir, train=...)` reads the MNIST files (apps pass theirs, which name a
    missing file)."""
    train, test = load(data_dir, train=True), load(data_dir, train=False)
    train_digits = train.images.reshape(-1, 28, 28)
    test_digits = test.images.reshape(-1, 28, 28)
    return Domains(
        source_images=to_rgb(train_digits[:limit]),
        source_labels=train.labels[:limit].astype(np.int64),
        target_images=shift_split(train_digits, seed, limit),
        test_source_images=to_rgb(test_digits[:test_limit]),
        test_target_images=shift_split(test_digits, seed + 1, test_limit),
        test_labels=test.labels[:test_limit].astype(np.int64))
