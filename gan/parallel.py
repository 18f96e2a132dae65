"""gan.Trainer on several ranks (needle.distributed): the engine's side of data parallelism.

Launched as `mpiexec -n N python -m apps.train_dcgan --distributed ...`, every rank runs the
same Trainer; `DataParallel` is what differs, and on one process every method below is the
identity, so the loop is one code path:

  * prepare(recipe): rank 0's weights and buffers on every rank, and every optimizer's
    step() averaging the gradients over the ranks first (bucketed all-reduce);
  * shard(data): each global batch (--batch_size images) is cut into N equal slices and
    rank r trains on slice r (`Sharded`); the noise is cut the same way
    (needle.distributed.shard_randn), so N ranks take the steps one process would (exactly,
    with SyncBatchNorm; plain BatchNorm normalises each rank's slice on its own);
  * reduce(figures, signal): the step's figures averaged over the ranks (the logged and
    health-checked figures are global; gradient norms are the mean of the ranks' own norms)
    and one decision for all ranks on whether a signal stops the run after this step;
  * writer: only rank 0 writes the run folder (run.json, metrics, samples, checkpoints,
    report) and speaks; the others compute;
  * align(recipe) before every checkpoint: every rank takes rank 0's complete state (what the
    checkpoint holds), so a resume, which gives every rank that state, continues every rank
    bit for bit, even where ranks keep state of their own (plain BatchNorm's running
    statistics, CycleGAN's image pools); ranks whose NumPy generators drifted apart are an
    error there;
  * share(value) / check_resume(info): rank 0 finds the checkpoint to resume, the others
    load the same one; a run resumed with another number of ranks is refused.
"""
import os

import numpy as np

import needle.distributed as dist
from needle import nn
from needle.optim import Optimizer

from .adversarial import Adversarial
from .errors import GANSetupError
from .runfolder import RunFolderError

__all__ = ["DataParallel", "Sharded"]


class Sharded:
    """Rank `rank`'s slice of every batch of `data`, a batch source (gan.batches) of global
    batches: rows [rank * B, (rank + 1) * B) of each array of the batch, B = batch_size /
    world. Everything else (steps_per_epoch, shuffle, state) is `data`'s, drawn alike on
    every rank."""

    def __init__(self, data, rank, world):
        if data.batch_size % world:
            raise GANSetupError(f"--batch_size {data.batch_size} is not a multiple of the "
                                f"{world} ranks (each rank trains on an equal slice of every "
                                "batch)")
        self.data, self.rank, self.world = data, rank, world
        self.rows = slice(rank * (data.batch_size // world),
                          (rank + 1) * (data.batch_size // world))

    def __getattr__(self, name):
        return getattr(self.data, name)

    def batch(self, position):
        return tuple(array[self.rows] for array in self.data.batch(position))


class DataParallel:
    """The ranks needle.distributed.init() joined (one process before that)."""

    def __init__(self):
        self.group = dist.get_group()
        self.rank, self.world = dist.rank(), dist.world_size()
        self.writer = self.rank == 0

    def prepare(self, recipe):
        if self.world == 1:
            return
        for component in recipe.components().values():
            if isinstance(component, nn.Module):
                dist.broadcast_parameters(component, group=self.group)
            optimizer = component.optimizer if isinstance(component, Adversarial) \
                else component
            if isinstance(optimizer, Optimizer):
                dist.average_gradients(optimizer, group=self.group)

    def shard(self, data):
        return data if self.world == 1 else Sharded(data, self.rank, self.world)

    def reduce(self, figures, signal):
        """(figures averaged over the ranks, the signal that stops the run after this step
        or None): a signal on any rank stops every rank at the same step."""
        if self.world == 1:
            return figures, signal
        names = sorted(figures)
        values = np.array([figures[n] for n in names] + [signal is not None], np.float64)
        self.group.host.all_reduce_sum(values, "the step's figures")
        averaged = {name: float(value / self.world) for name, value in zip(names, values)}
        stopping = (signal or "a signal on another rank") if values[-1] else None
        return averaged, stopping

    def share(self, value):
        """Rank 0's value on every rank."""
        return value if self.world == 1 else self.group.host.broadcast_object(value)

    def align(self, recipe):
        if self.world == 1:
            return
        components = recipe.components()
        mine = np.random.get_state()
        theirs = self.share((mine, {name: c.state_dict() for name, c in components.items()}
                             if self.writer else None))
        if not all(np.array_equal(a, b) for a, b in zip(mine[1:], theirs[0][1:])):
            raise GANSetupError(f"rank {self.rank}'s NumPy generator is not rank 0's: a "
                                "recipe drew random numbers on one rank only")
        if not self.writer:
            for name, component in components.items():
                component.load_state_dict(theirs[1][name])

    def check_resume(self, info, path):
        """Refuse to resume a run that was trained on another number of ranks."""
        saved = int(info.get("world_size", 1))
        if saved != self.world:
            command = f"python -m apps.{info.get('app', 'NAME')} --resume --out_dir " \
                      f"{os.path.dirname(os.path.dirname(path))}"
            how = command if saved == 1 else f"mpiexec -n {saved} {command} --distributed"
            raise RunFolderError(f"{path} was written by a run on {saved} rank(s) and this "
                                 f"one has {self.world}; resume it on {saved}: {how} (the "
                                 "data slices, noise and batch statistics depend on the "
                                 "number of ranks)")

    def info(self):
        """What checkpoints and run.json record of the ranks (nothing on one process, so
        single-process files stay as they were)."""
        return {} if self.world == 1 else {"world_size": self.world}
