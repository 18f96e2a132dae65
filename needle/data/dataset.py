"""Dataset base classes (COURSE_API.md section 8)."""
import numpy as np

__all__ = ["Dataset", "NDArrayDataset"]


class Dataset:
    """An indexable collection of examples, each a tuple of NumPy arrays.

    `transforms` is a list of callables applied in order to each image. A subclass that can
    answer `dataset[index_array]` (and `dataset[start:stop]`) with whole batches in one call
    sets `batch_indexable = True`; the DataLoader then fetches each batch in one call instead
    of a Python loop over items.
    """

    batch_indexable = False

    def __init__(self, transforms=None):
        self.transforms = transforms

    def __getitem__(self, index):
        raise NotImplementedError()

    def __len__(self):
        raise NotImplementedError()

    def apply_transforms(self, x):
        if self.transforms is not None:
            for transform in self.transforms:
                x = transform(x)
        return x

    def apply_transforms_batch(self, images):
        """Transform each image of an (N, H, W, C) batch, in item order.

        One call for the whole batch when every transform is `batchable` (e.g. Normalize);
        otherwise per image, because random transforms draw from the RNG once per image.
        """
        if not self.transforms:
            return images
        if all(getattr(t, "batchable", False) for t in self.transforms):
            return self.apply_transforms(images)
        if len(images) == 0:
            return images
        return np.stack([self.apply_transforms(image) for image in images])


class NDArrayDataset(Dataset):
    """Item i is `tuple(array[i] for array in arrays)`; slices and index arrays give batches."""

    batch_indexable = True

    def __init__(self, *arrays):
        super().__init__()
        if not arrays:
            raise ValueError("NDArrayDataset: needs at least one array")
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"NDArrayDataset: arrays have different lengths "
                             f"{[len(a) for a in arrays]}")
        # Lists become arrays so that index arrays (shuffled batches) work on every field.
        self.arrays = tuple(np.asarray(a) if isinstance(a, (list, tuple)) else a
                            for a in arrays)

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)
