"""DataLoader: batches of a Dataset as tuples of Tensors (COURSE_API.md section 8)."""
import math
import operator

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

    `shard=(rank, world)` splits every batch over `world` data-parallel ranks: with W ranks
    of batch_size B, global batch k is positions [k*W*B, (k+1)*W*B) of the epoch's order,
    the k-th batch one process with batch_size W*B gets, and rank r takes the r-th block of
    B from it, positions [k*W*B + r*B, k*W*B + (r+1)*B). Concatenating the ranks' batches in
    rank order gives that single-process batch. Every rank must draw the same permutation
    (seed NumPy alike on every rank) and `drop_last` is required: a short last batch cannot
    be cut into W equal slices, and unequal slices would not average to the same gradient.
    `len(loader)` counts global batches, the same on every rank.

    `state_dict()` gives {"position": batches of this epoch already handed out, "order":
    the epoch's permutation (with shuffle)}; after `load_state_dict(state)` the next
    `iter(loader)` continues that epoch from that position instead of drawing a new order,
    so a resumed run sees the batches an uninterrupted one would.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, device=None,
                 dtype="float32", shard=None):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.rank, self.world = _check_shard(shard)
        if self.world > 1 and not drop_last:
            raise ValueError(f"DataLoader: shard={shard} needs drop_last=True (a short last "
                             f"batch cannot be cut into {self.world} equal slices)")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = device
        self.dtype = dtype
        self._order, self._position, self._resume = None, 0, None

    def __len__(self):
        n, size = len(self.dataset), self.batch_size * self.world
        return n // size if self.drop_last else math.ceil(n / size)

    def __iter__(self):
        # Draw now, not at the first next(): the permutation belongs to iteration start.
        resume, self._resume = self._resume, None
        if resume is not None and resume[1] < len(self):
            order, start = resume
        else:
            order = np.random.permutation(len(self.dataset)) if self.shuffle else None
            start = 0
        self._order, self._position = order, start
        return self._batches(order, start)

    def _batches(self, order, first):
        n, size, share = len(self.dataset), self.batch_size * self.world, self.batch_size
        for batch in range(first, len(self)):
            start = batch * size + self.rank * share
            end = min(start + share, n)
            index = slice(start, end) if order is None else order[start:end]
            self._position = batch + 1  # handed out: a checkpoint now resumes after it
            yield self._to_tensors(self._fetch(index))

    def state_dict(self):
        """{"position": int, "order": permutation (with shuffle)}: where this epoch stands."""
        state = {"position": self._position}
        if self._order is not None:
            state["order"] = np.array(self._order, copy=True)
        return state

    def load_state_dict(self, state):
        """Continue the epoch `state` describes at the next `iter(loader)`."""
        position = int(np.asarray(state["position"]))
        order = state.get("order")
        if not 0 <= position <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: position {position} is outside "
                             f"this loader's {len(self)} batches")
        if self.shuffle and position < len(self):
            if order is None or len(order) != len(self.dataset):
                raise ValueError(f"DataLoader.load_state_dict: a shuffled loader needs the "
                                 f"epoch's order of {len(self.dataset)} indices, got "
                                 f"{None if order is None else len(order)}")
            order = np.asarray(order)
        self._resume = (order if self.shuffle else None, position)

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


def _check_shard(shard):
    """(rank, world) from shard=None or a pair of ints with 0 <= rank < world."""
    if shard is None:
        return 0, 1
    try:
        rank, world = (operator.index(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"DataLoader: shard must be (rank, world), got {shard!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"DataLoader: shard=(rank, world) needs 0 <= rank < world, "
                         f"got {shard!r}")
    return rank, world
