"""Data-parallel training over MPI (mpi4py, CPUs) or NCCL (CuPy, GPUs).

Launch N copies with `mpiexec -n N python train.py`; in each one

    import needle.distributed as dist
    group = dist.init()                      # or dist.init(device=ndl.cuda()): NCCL
    dist.broadcast_parameters(model)         # rank 0's weights and buffers everywhere
    opt = dist.average_gradients(ndl.optim.Adam(model.parameters(), lr=2e-4))
    with dist.abort_on_error():              # one rank's error ends the job, named
        for (x,) in ndl.data.DataLoader(data, batch_size=32, shuffle=True, drop_last=True,
                                        shard=(dist.rank(), dist.world_size())):
            opt.reset_grad(); loss(model(x)).backward(); opt.step()

Every rank seeds NumPy alike and draws the same global permutation; rank r trains on its
slice of each global batch (DataLoader's `shard`), and gradients are averaged by bucketed
all-reduce, so N ranks of batch B take the steps one process of batch N*B takes. BatchNorm
then normalises over each rank's own slice; `nn.SyncBatchNorm` normalises over the global
batch. Only rank 0 should write files.

The group `init()` makes is kept here (the one piece of process-wide state, as MPI's own
COMM_WORLD) and used wherever no group is passed; before `init()` a process is rank 0 of 1
and every collective is the identity. mpi4py is imported by `init()` only: plain needle
never needs it (`pip install 'needle-gan[distributed]'` installs mpi4py and mpich).
"""
from .groups import (MPI_HINT, CollectiveTimeout, DistributedError, MPIGroup, NCCLGroup,
                     nccl_group)
from .ops import AllReduceSum, all_reduce_sum
from .parallel import (DEFAULT_BUCKET_MB, abort_on_error, all_reduce_gradients,
                       average_gradients, broadcast_parameters, shard_randn)

__all__ = ["init", "get_group", "is_initialized", "rank", "world_size",
           "broadcast_parameters", "all_reduce_gradients", "average_gradients",
           "shard_randn", "abort_on_error", "all_reduce_sum", "AllReduceSum", "MPIGroup",
           "NCCLGroup", "DistributedError", "CollectiveTimeout", "DEFAULT_BUCKET_MB", "MPI_HINT"]

_GROUP = None


def init(device=None, timeout=300.0, comm=None):
    """Join the ranks mpiexec started and make them the default group; returns it.

    device: when it is `ndl.cuda()`, collectives run over NCCL (CuPy's bindings) on one
    GPU per rank, set up through MPI; otherwise over MPI on NumPy arrays. timeout: seconds
    a collective may wait for the other ranks before raising CollectiveTimeout (a rank that
    died silently or hangs); keep it above the longest work one rank does alone, such as
    rank 0 writing samples and checkpoints. comm: an mpi4py communicator (COMM_WORLD).
    """
    global _GROUP
    if timeout <= 0:
        raise ValueError(f"needle.distributed.init: timeout must be > 0 seconds, got {timeout}")
    nccl = device is not None and getattr(device, "name", None) == "cuda"
    if nccl and device.xp is None:
        raise DistributedError("needle.distributed.init: device cuda() is not available "
                               "(no CuPy or no GPU); NCCL needs both")
    group = MPIGroup(comm, timeout)
    if nccl:
        group = nccl_group(group, device.xp)
    _GROUP = group
    return group


def get_group():
    """The group init() made, or None before init()."""
    return _GROUP


def is_initialized():
    return _GROUP is not None


def rank():
    """This process's rank (0 before init())."""
    return 0 if _GROUP is None else _GROUP.rank


def world_size():
    """The number of ranks (1 before init())."""
    return 1 if _GROUP is None else _GROUP.size
