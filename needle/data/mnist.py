"""MNIST from the four standard gzip IDX files (COURSE_API.md section 8)."""
import os

import numpy as np

from .dataset import Dataset
from .idx import DataFileError, read_idx

__all__ = ["MNISTDataset", "load_mnist", "DataFileError", "read_idx"]

_FILES = {True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class MNISTDataset(Dataset):
    """MNIST images and labels, verified on load (see `needle.data.idx`).

    Images are float32 in [0, 1] (divided by 255, one global scale) stored flat, as the
    course's `parse_mnist` has them: item i is (X (784,), y) and a slice or index array gives
    (X (B, 784), y (B,)), the shapes of a DataLoader batch. Labels are uint8. Transforms see
    each image as rows x cols x 1 (28 x 28 x 1).
    """

    batch_indexable = True

    def __init__(self, image_filename, label_filename, transforms=None):
        super().__init__(transforms)
        images = read_idx(image_filename, ndim=3)
        labels = read_idx(label_filename, ndim=1)
        if len(images) != len(labels):
            raise DataFileError(f"{image_filename} has {len(images)} images but "
                                f"{label_filename} has {len(labels)} labels")
        count, rows, cols = images.shape
        self.image_shape = (rows, cols, 1)
        # One pass over the buffer; in-place division avoids a second full-size temporary.
        self.images = images.reshape(count, rows * cols).astype(np.float32)
        self.images /= 255
        self.labels = labels.copy()  # own the memory, not the decompressed file's buffer

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, list):
            index = np.asarray(index, dtype=np.int64)
        images, labels = self.images[index], self.labels[index]
        if not self.transforms:
            return images, labels
        images = np.array(images)  # a transform that writes in place must not reach the data
        if images.ndim == 1:  # a single item
            image = self.apply_transforms(images.reshape(self.image_shape))
            return np.ascontiguousarray(image).reshape(-1), labels
        batch = self.apply_transforms_batch(images.reshape((-1,) + self.image_shape))
        return np.ascontiguousarray(batch).reshape(len(images), -1), labels


def load_mnist(data_dir="data/mnist", train=True, transforms=None):
    """The MNIST training (60000) or test (10000) set from the standard files in data_dir."""
    images, labels = _FILES[bool(train)]
    return MNISTDataset(os.path.join(data_dir, images), os.path.join(data_dir, labels),
                        transforms=transforms)
