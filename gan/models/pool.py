"""The image pool of Shrivastava et al. (2017), as CycleGAN uses it for D's fake inputs."""
import numpy as np

__all__ = ["ImagePool"]


class ImagePool:
    """Keeps up to `size` generated images; D sees a mix of new and older ones.

    While the pool fills, new images pass through and are stored. Once full, each image of a
    batch is, with probability 1/2, swapped for a stored one (which the new image replaces),
    the stored ones drawn without replacement within a batch (the original draws one at a
    time, with replacement). Works on NumPy arrays and draws from NumPy's global RNG, so a
    checkpoint of that RNG and of `state_dict()` resumes it exactly.
    """

    def __init__(self, size=50):
        self.size = size
        self.images = None
        self.count = 0

    def query(self, batch):
        batch = np.array(batch, copy=True)
        if self.size == 0:
            return batch
        if self.images is None:
            self.images = np.zeros((self.size,) + batch.shape[1:], dtype=batch.dtype)
        fill = min(self.size - self.count, len(batch))
        self.images[self.count:self.count + fill] = batch[:fill]
        self.count += fill
        rest = batch[fill:]  # a view: the swaps below write into `batch`
        if len(rest):
            chosen = np.flatnonzero(np.random.rand(len(rest)) < 0.5)
            slots = np.random.choice(self.size, len(chosen), replace=len(chosen) > self.size)
            stored = self.images[slots].copy()
            self.images[slots] = rest[chosen]
            rest[chosen] = stored
        return batch

    def state_dict(self):
        images = np.zeros((0,), dtype=np.float32) if self.images is None else self.images
        return {"images": images, "count": np.asarray(self.count)}

    def load_state_dict(self, state):
        self.count = int(np.asarray(state["count"]))
        images = np.asarray(state["images"])
        self.images = images if images.ndim > 1 else None
