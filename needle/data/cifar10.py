"""CIFAR-10 from the "python version" pickle batches (COURSE_API.md section 8, hw4).

`data/cifar-10-batches-py/` holds `data_batch_1` ... `data_batch_5` (training, 10000 images
each) and `test_batch` (10000). Each file is a pickle (protocol 2, written by Python 2) of a
dict with bytes keys: b"data" a uint8 array (10000, 3072) whose rows are the R, G and B planes
of a 32 x 32 image, b"labels" a list of ints 0-9, plus b"batch_label" and b"filenames".

A pickle can name any importable callable and have it called while loading, so a tampered
data file could run code. The batches are therefore read with `RestrictedUnpickler`, which
admits only the handful of globals those files use and raises `UnsafePickleError` (naming the
global) for anything else, before it is ever called.
"""
import codecs
import os
import pickle

import numpy as np

from .dataset import Dataset

__all__ = ["CIFAR10Dataset", "RestrictedUnpickler", "UnsafePickleError", "load_cifar10_batch"]

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
IMAGE_SHAPE = (3, 32, 32)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowlist (the file is not a plain data file)."""


def _latin1_encode(obj, encoding="latin1", errors="strict"):
    """`_codecs.encode` limited to latin-1: how Python 3 writes bytes at protocol 2."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"pickle called _codecs.encode with encoding {encoding!r}; "
                                f"only latin-1 (bytes at protocol 2) is allowed")
    return codecs.encode(obj, "latin1", errors)


def _allowed_globals():
    # numpy's array _reconstruct, taken from NumPy's own pickle support rather than by
    # importing the module a file names: numpy.core is a deprecated alias in NumPy 2 and
    # warns when touched.
    multiarray_reconstruct = np.zeros(0).__reduce__()[0]
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray_reconstruct
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose `find_class` admits only what NumPy-array data pickles need.

    Allowed: numpy.ndarray, numpy.dtype, numpy's array `_reconstruct` (under its NumPy 1 and
    NumPy 2 module names) and `_codecs.encode` restricted to latin-1 (Python 3 writes bytes
    that way at protocol 2). Every other global raises UnsafePickleError without being
    imported or called. Containers, strings, numbers and bytes need no globals.
    """

    _allowed = None

    def find_class(self, module, name):
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name} from a pickle "
                                    f"(only NumPy array data is allowed)") from None


def load_cifar10_batch(path):
    """One batch file as (images uint8 (N, 3, 32, 32), labels int64 (N,)), via the restricted
    unpickler. Raises UnsafePickleError for a pickle that names a forbidden global and
    ValueError for one that does not hold a CIFAR-10 batch."""
    with open(path, "rb") as f:
        batch = RestrictedUnpickler(f, encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and "
                         f"b'labels')")
    images = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    size = int(np.prod(IMAGE_SHAPE))
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != size:
        raise ValueError(f"{path}: b'data' should be uint8 (N, {size}), got {images.dtype} "
                         f"{images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"{path}: {len(images)} images but {labels.shape} labels")
    return images.reshape((-1,) + IMAGE_SHAPE), labels


class CIFAR10Dataset(Dataset):
    """CIFAR-10: item i is (X float32 (3, 32, 32) in [0, 1] (pixel / 255), label int64).

    base_folder: the `cifar-10-batches-py` folder; train: data_batch_1..5 (50000 images) or
    test_batch (10000). `p` is accepted for the course's signature and unused. Transforms
    (RandomFlipHorizontal, RandomCrop, ...) work on H x W x C images, so each image is handed
    to them as (32, 32, 3) and returned to (3, 32, 32).

    Images are kept as uint8 (150 MB for the training set instead of 600 MB as float) and
    scaled when read; `X` gives the whole scaled array on demand. Slices and index arrays
    return whole batches, so the DataLoader fetches a batch in one call.
    """

    batch_indexable = True

    def __init__(self, base_folder, train, p=0.5, transforms=None):
        super().__init__(transforms)
        self.p = p
        files = TRAIN_FILES if train else TEST_FILES
        batches = [load_cifar10_batch(os.path.join(base_folder, name)) for name in files]
        self.images = np.concatenate([images for images, _ in batches])
        self.y = np.concatenate([labels for _, labels in batches])

    @property
    def X(self):
        """All images, float32 (N, 3, 32, 32) in [0, 1] (allocated on each access)."""
        return self._scale(self.images)

    @staticmethod
    def _scale(images):
        return (images / 255.0).astype(np.float32)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        if isinstance(index, list):
            index = np.asarray(index, dtype=np.int64)
        images, labels = self._scale(self.images[index]), self.y[index]
        if not self.transforms:
            return images, labels
        if images.ndim == 3:  # one image
            return np.ascontiguousarray(
                self.apply_transforms(images.transpose(1, 2, 0)).transpose(2, 0, 1)), labels
        batch = self.apply_transforms_batch(images.transpose(0, 2, 3, 1))
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)), labels
