"""Process groups: the ranks that train together and the collectives they run.

A group offers, on one contiguous array of its array module (NumPy for MPI, CuPy for NCCL),

    all_reduce_sum(array, what)       every rank's array becomes the elementwise sum
    broadcast(array, root, what)      every rank's array becomes root's
    barrier(what)                     wait until every rank is here
    broadcast_object(value, root)     root's picklable value on every rank
    abort(code)                       end every rank of the job now (MPI_Abort)

and `host`, the MPI group for NumPy arrays on the host (itself for MPI; under NCCL the MPI
group it was set up with), for small figures that live on the CPU.

`what` names the collective in the error a timeout raises. Every collective waits with a
deadline (`timeout` seconds): a rank that died silently or hangs makes the others raise
CollectiveTimeout instead of waiting for ever. MPI collectives are the non-blocking ones
(Iallreduce, Ibcast) polled until done or late; NCCL ones are queued on a CUDA stream that
is polled the same way, and a late one aborts the NCCL communicator.
"""
import pickle
import time

import numpy as np

__all__ = ["DistributedError", "CollectiveTimeout", "MPIGroup", "NCCLGroup", "import_mpi",
           "MPI_HINT"]

# Seconds between a rank's last words on stderr and MPI_Abort (see MPIGroup.abort).
_ABORT_GRACE_S = 0.5

MPI_HINT = "needle.distributed needs mpi4py: pip install 'needle-gan[distributed]'"


class DistributedError(RuntimeError):
    """A distributed setup or run problem, named in one line."""


class CollectiveTimeout(DistributedError):
    """A collective did not complete on every rank within the group's timeout."""


def import_mpi():
    """mpi4py's MPI module (imported on first use: plain needle never needs it)."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(MPI_HINT) from error
    return MPI


def _wait(done, timeout, rank, what, spin=0.05, pause=1e-4):
    """Poll `done()` until True; raise CollectiveTimeout after `timeout` seconds.

    MPI moves a non-blocking collective forward only inside these polls, so they come back
    to back for the first `spin` seconds (a collective whose ranks are all there completes
    at the speed of a blocking one); after that a waiting rank sleeps `pause` between polls,
    leaving the cores to the ranks still computing."""
    start = time.monotonic()
    spin_until, deadline = start + min(spin, timeout), start + timeout
    while not done():
        now = time.monotonic()
        if now > spin_until:
            if now > deadline:
                raise CollectiveTimeout(
                    f"needle.distributed: rank {rank}: {what} did not complete on every rank "
                    f"within {timeout:g} s (a rank died, hangs, or runs different code)")
            time.sleep(pause)


class MPIGroup:
    """The ranks of an MPI communicator (COMM_WORLD by default) over NumPy arrays."""

    def __init__(self, comm=None, timeout=300.0):
        self.MPI = import_mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = float(timeout)
        self.backend, self.host = "mpi", self

    def all_reduce_sum(self, array, what="all_reduce"):
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        _wait(request.Test, self.timeout, self.rank, what)

    def broadcast(self, array, root=0, what="broadcast"):
        request = self.comm.Ibcast(array, root=root)
        _wait(request.Test, self.timeout, self.rank, what)

    def barrier(self, what="barrier"):
        _wait(self.comm.Ibarrier().Test, self.timeout, self.rank, what)

    def broadcast_object(self, value, root=0, what="object broadcast"):
        """Root's `value` (pickled; the other ranks' are ignored), with the deadline: its
        length, then its bytes."""
        data = pickle.dumps(value) if self.rank == root else b""
        size = np.array([len(data)], dtype=np.int64)
        self.broadcast(size, root, what)
        buffer = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root \
            else np.empty(int(size[0]), dtype=np.uint8)
        self.broadcast(buffer, root, what)
        return pickle.loads(buffer.tobytes())  # bytes from rank `root` of this same job

    def abort(self, code=1):
        # MPI_Abort makes mpiexec kill every process at once; a moment first lets the launcher
        # forward the line this rank just wrote to stderr (without it the line is sometimes lost)
        time.sleep(_ABORT_GRACE_S)
        self.comm.Abort(code)


class NCCLGroup:
    """NCCL over CuPy arrays on this rank's GPU; set up and aborted through an MPIGroup.

    `nccl` is `cupy.cuda.nccl`, `comm` an `nccl.NcclCommunicator` and `stream` the CuPy
    stream the collectives are queued on (they run in stream order with the kernels, so no
    synchronisation is needed before one; the wait after one polls `stream.done`).
    """

    def __init__(self, nccl, comm, stream, mpi_group):
        self.nccl, self.comm, self.stream, self.mpi = nccl, comm, stream, mpi_group
        self.rank, self.size, self.timeout = mpi_group.rank, mpi_group.size, mpi_group.timeout
        self.backend, self.host = "nccl", mpi_group
        self._types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64}

    def _type(self, array, what):
        try:
            return self._types[str(array.dtype)]
        except KeyError:
            raise DistributedError(f"needle.distributed: {what}: NCCL takes float16, float32 "
                                   f"or float64 arrays here, got {array.dtype}") from None

    def all_reduce_sum(self, array, what="all_reduce"):
        pointer = device_pointer(array)
        self.comm.allReduce(pointer, pointer, array.size, self._type(array, what),
                            self.nccl.NCCL_SUM, self.stream.ptr)
        self._finish(what)

    def broadcast(self, array, root=0, what="broadcast"):
        self.comm.bcast(device_pointer(array), array.size, self._type(array, what), root,
                        self.stream.ptr)
        self._finish(what)

    def barrier(self, what="barrier"):
        self.mpi.barrier(what)

    def broadcast_object(self, value, root=0, what="object broadcast"):
        return self.mpi.broadcast_object(value, root, what)

    def _finish(self, what):
        try:
            _wait(lambda: self.stream.done, self.timeout, self.rank, what)
        except CollectiveTimeout:
            self.comm.abort()  # frees the GPU from the stuck collective
            raise
        self.comm.check_async_error()

    def abort(self, code=1):
        self.comm.abort()
        self.mpi.abort(code)


def device_pointer(array):
    """The device address of a CuPy array's first element."""
    return array.data.ptr


def nccl_group(mpi_group, cupy):
    """An NCCLGroup over the MPI ranks: rank i of a node uses GPU i of that node (local rank
    from MPI's shared-memory split), rank 0 makes the NCCL id and MPI broadcasts it."""
    MPI = mpi_group.MPI
    local = mpi_group.comm.Split_type(MPI.COMM_TYPE_SHARED, key=mpi_group.rank)
    gpus = cupy.cuda.runtime.getDeviceCount()
    if local.Get_size() > gpus:
        raise DistributedError(f"needle.distributed: {local.Get_size()} ranks on this node "
                               f"but {gpus} GPU(s); NCCL needs one GPU per rank")
    cupy.cuda.Device(local.Get_rank()).use()
    nccl = cupy.cuda.nccl
    unique_id = mpi_group.broadcast_object(nccl.get_unique_id() if mpi_group.rank == 0
                                           else None)
    comm = nccl.NcclCommunicator(mpi_group.size, unique_id, mpi_group.rank)
    return NCCLGroup(nccl, comm, cupy.cuda.get_current_stream(), mpi_group)
