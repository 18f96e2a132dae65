"""Where a recipe's batches come from: the data side of gan.Trainer.

A batch source answers what the engine needs to run epochs and to resume them bit for bit:

    steps_per_epoch          batches in one epoch
    shuffle()                draw this epoch's order from NumPy's global RNG (at position 0)
    batch(position)          the position-th batch of the epoch: a tuple of NumPy arrays
    state() / load_state()   the epoch's order as named arrays, saved in each checkpoint

Every random draw goes through NumPy's global RNG, which every checkpoint saves, so a resumed
run draws the same orders (and the same fresh samples) as an uninterrupted one.

    Shuffled(images, labels, batch_size=64)   arrays sharing their first axis (DCGAN, cGAN)
    Unpaired(images_A, images_B, batch_size)  two domains, each shuffled (CycleGAN;
                                              arrays or needle.data.ImageFolder)
    Sampled(draw, batch_size, steps_per_epoch) fresh samples every step (2-D mixtures)
"""
import numpy as np

__all__ = ["Shuffled", "Unpaired", "Sampled"]


class Shuffled:
    """Minibatches of `arrays` (sharing their first axis) in a new random order each epoch;
    the last partial batch of an epoch is dropped."""

    def __init__(self, *arrays, batch_size):
        if not arrays:
            raise ValueError("Shuffled: give at least one array")
        counts = {len(a) for a in arrays}
        if len(counts) != 1:
            raise ValueError(f"Shuffled: arrays of different lengths {sorted(counts)}")
        self.arrays, self.batch_size = arrays, int(batch_size)
        self.count = len(arrays[0])
        self.steps_per_epoch = self.count // self.batch_size
        self.order = None

    @property
    def images(self):
        """The first array: the images the setup checks look at."""
        return self.arrays[0]

    def shuffle(self):
        self.order = np.random.permutation(self.count)

    def batch(self, position):
        index = self.order[position * self.batch_size:(position + 1) * self.batch_size]
        return tuple(a[index] for a in self.arrays)

    def state(self):
        return {} if self.order is None else {"order": self.order}

    def load_state(self, arrays):
        self.order = arrays.get("order")


class Unpaired:
    """Two domains, each in its own random order per epoch, paired position by position up
    to the smaller domain. Each domain is an array or a dataset indexed by an index array
    (needle.data.ImageFolder, whose training batches are random crops and flips drawn from
    NumPy's global RNG, so a resume draws the same ones)."""

    def __init__(self, images_A, images_B, batch_size):
        self.images_A, self.images_B = images_A, images_B
        self.batch_size = int(batch_size)
        self.count = min(len(images_A), len(images_B))
        self.steps_per_epoch = self.count // self.batch_size
        self.order_A = self.order_B = None

    def shuffle(self):
        self.order_A = np.random.permutation(len(self.images_A))
        self.order_B = np.random.permutation(len(self.images_B))

    def batch(self, position):
        window = slice(position * self.batch_size, (position + 1) * self.batch_size)
        return self.images_A[self.order_A[window]], self.images_B[self.order_B[window]]

    def state(self):
        return {name: order for name, order in (("order_A", self.order_A),
                                                ("order_B", self.order_B))
                if order is not None}

    def load_state(self, arrays):
        self.order_A, self.order_B = arrays.get("order_A"), arrays.get("order_B")


class Sampled:
    """A fresh batch from `draw(n, rng)` at every step (rng: NumPy's global RandomState);
    an epoch is `steps_per_epoch` steps, there is no order to keep."""

    def __init__(self, draw, batch_size, steps_per_epoch):
        self.draw, self.batch_size = draw, int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)

    def shuffle(self):
        pass

    def batch(self, position):
        return (self.draw(self.batch_size, np.random),)

    def state(self):
        return {}

    def load_state(self, arrays):
        pass
