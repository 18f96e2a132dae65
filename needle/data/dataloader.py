"""DataLoader: batches of a Dataset as tuples of Tensors (COURSE_API.md section 8)."""
import math

import numpy as np

from ..autograd import Tensor

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over `dataset` in batches; each batch is a tuple with one Tensor per field.

    Without shuffle the batches are the contiguous ranges [0, b), [b, 2b), ... with a short
    last batch (dropped when `drop_last`). With shuffle, `np.random.permutation(len(dataset))`
    is drawn when iteration starts (at `iter(loader)`), as the course's golden values expect.

    Each batch is fetched with one `dataset[slice]` or `dataset[index_array]` call when the
    dataset is `batch_indexable`, and item by item (then stacked) otherwise. Floating fields
    become `dtype` (float32 by default); integer fields (labels) keep their dtype, which
    `init.one_hot` and `nn.SoftmaxLoss` take as is. Batch Tensors are constants
    (requires_grad=False) on `device` (the default device when None).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, device=None,
                 dtype="float32"):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = device
        self.dtype = dtype

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        # Draw now, not at the first next(): the permutation belongs to iteration start.
        order = np.random.permutation(len(self.dataset)) if self.shuffle else None
        return self._batches(order)

    def _batches(self, order):
        n, size = len(self.dataset), self.batch_size
        stop = n - n % size if self.drop_last else n
        for start in range(0, stop, size):
            end = min(start + size, n)
            index = slice(start, end) if order is None else order[start:end]
            yield self._to_tensors(self._fetch(index))

    def _fetch(self, index):
        if getattr(self.dataset, "batch_indexable", False):
            batch = self.dataset[index]
            return batch if isinstance(batch, tuple) else (batch,)
        ids = range(index.start, index.stop) if isinstance(index, slice) else index
        items = [self.dataset[int(i)] for i in ids]
        items = [item if isinstance(item, tuple) else (item,) for item in items]
        return tuple(np.stack([np.asarray(x) for x in field]) for field in zip(*items))

    def _to_tensors(self, fields):
        tensors = []
        for field in fields:
            field = np.asarray(field)
            dtype = self.dtype if self.dtype is not None and field.dtype.kind == "f" \
                else field.dtype
            tensors.append(Tensor(field, device=self.device, dtype=dtype, requires_grad=False))
        return tuple(tensors)
