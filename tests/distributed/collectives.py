"""Rank side of tests/needle/test_distributed_mpi.py::test_collectives (mpiexec -n 2).

Every expected value is computed here with NumPy from all ranks' inputs, which mpi4py's own
pickled allgather brings to every rank (a path independent of needle.distributed):

- broadcast_parameters: every parameter and buffer equals rank 0's, in place;
- all_reduce_gradients: each grad is the mean of the ranks' grads, with one collective per
  bucket (counted), for a bucket limit that gives one bucket per dtype and one that splits;
- average_gradients: SGD(lr=1).step() subtracts the mean gradient;
- all_reduce_sum: forward is the sum over ranks, backward the sum of the output gradients;
- SyncBatchNorm: output, input gradient and running statistics equal BatchNorm2d's on the
  concatenated global batch; weight gradients summed over ranks equal the global ones;
- shard_randn: the ranks' rows, in rank order, are one process's draw of the global batch,
  and the generators stay in step;
- broadcast_object: rank 0's object (arrays inside) on every rank.
"""
import numpy as np

import needle as ndl
import needle.distributed as dist
from needle import nn

from .common import report


class Model(nn.Module):
    def __init__(self, rank):
        super().__init__()
        rng = np.random.RandomState(100 + rank)  # different values on every rank
        self.a = nn.Parameter(rng.randn(3, 4).astype(np.float32))
        self.b = nn.Parameter(rng.randn(5).astype(np.float64), dtype="float64")
        self.c = nn.Parameter(rng.randn(2, 2, 2).astype(np.float32))
        self.register_buffer("stat", ndl.Tensor(rng.randn(4).astype(np.float32)))


def check_broadcast(comm):
    model = Model(comm.rank)
    before = comm.allgather(model.state_dict())
    a = model.a
    dist.broadcast_parameters(model)
    assert model.a is a, "broadcast_parameters replaced a Parameter object"
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[0][name], err_msg=name)
        assert value.dtype == before[0][name].dtype, name


def check_gradients(comm, group):
    model = Model(comm.rank)
    rng = np.random.RandomState(200 + comm.rank)
    for p in model.parameters():
        p.grad = ndl.Tensor(rng.randn(*p.shape).astype(p.dtype), dtype=p.dtype)
    grads = comm.allgather([p.grad.numpy() for p in model.parameters()])
    expected = [np.mean([g[i] for g in grads], axis=0) for i in range(3)]
    calls = count_calls(group)
    # float32: a (48 B) and c (32 B), float64: b (40 B). A 64 B limit puts a and c in two
    # buckets, so three collectives; 1 MB gives one per dtype, two collectives.
    for bucket_mb, collectives in ((64 / 2 ** 20, 3), (1.0, 2)):
        for p, g in zip(model.parameters(), grads[comm.rank]):
            p.grad = ndl.Tensor(g, dtype=p.dtype)
        calls.clear()
        dist.all_reduce_gradients(model.parameters(), bucket_mb=bucket_mb)
        assert len(calls) == collectives, (bucket_mb, calls)
        for p, want in zip(model.parameters(), expected):
            np.testing.assert_allclose(p.grad.numpy(), want, rtol=1e-6)
            assert p.grad.dtype == p.dtype
    restore(group)


def check_optimizer(comm):
    model = Model(0)  # same start everywhere
    start = [p.numpy().copy() for p in model.parameters()]
    opt = dist.average_gradients(ndl.optim.SGD(model.parameters(), lr=1.0))
    assert isinstance(opt, ndl.optim.SGD)
    rng = np.random.RandomState(300 + comm.rank)
    for p in model.parameters():
        p.grad = ndl.Tensor(rng.randn(*p.shape).astype(p.dtype), dtype=p.dtype)
    grads = comm.allgather([p.grad.numpy() for p in model.parameters()])
    opt.step()
    for i, p in enumerate(model.parameters()):
        mean = np.mean([g[i] for g in grads], axis=0)
        np.testing.assert_allclose(p.numpy(), start[i] - mean, rtol=1e-6, atol=1e-7)
    assert opt.state_dict()["lr"] == 1.0


def check_all_reduce_sum(comm, group):
    rng = np.random.RandomState(400 + comm.rank)
    x_value, w_value = rng.randn(2, 3), rng.randn(2, 3)
    xs, ws = comm.allgather(x_value), comm.allgather(w_value)
    x = ndl.Tensor(x_value, dtype="float64")
    y = dist.all_reduce_sum(x, group)
    np.testing.assert_allclose(y.numpy(), np.sum(xs, axis=0), rtol=1e-12)
    (y * ndl.Tensor(w_value, dtype="float64")).sum().backward()
    # d(sum over ranks of L_r)/dx = sum over ranks of w_r
    np.testing.assert_allclose(x.grad.numpy(), np.sum(ws, axis=0), rtol=1e-12)


def check_sync_batch_norm(comm):
    rng = np.random.RandomState(500 + comm.rank)
    x_value = rng.randn(4, 3, 2, 2) * 2 + 1
    w_value = rng.randn(4, 3, 2, 2)
    xs, ws = comm.allgather(x_value), comm.allgather(w_value)
    sync = nn.SyncBatchNorm(3, dtype="float64")
    x = ndl.Tensor(x_value, dtype="float64")
    y = sync(x)
    (y * ndl.Tensor(w_value, dtype="float64")).sum().backward()
    sums = comm.allgather((sync.weight.grad.numpy(), sync.bias.grad.numpy()))

    plain = nn.BatchNorm2d(3, dtype="float64")
    x_all = ndl.Tensor(np.concatenate(xs), dtype="float64")
    y_all = plain(x_all)
    (y_all * ndl.Tensor(np.concatenate(ws), dtype="float64")).sum().backward()
    mine = slice(4 * comm.rank, 4 * comm.rank + 4)
    np.testing.assert_allclose(y.numpy(), y_all.numpy()[mine], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), x_all.grad.numpy()[mine], rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(sync.running_mean.numpy(), plain.running_mean.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(sync.running_var.numpy(), plain.running_var.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(sum(s[0] for s in sums), plain.weight.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(sum(s[1] for s in sums), plain.bias.grad.numpy(), rtol=1e-9)


def check_shard_randn(comm):
    np.random.seed(11)
    mine = dist.shard_randn(3, 4).numpy()
    after = np.random.rand()
    np.random.seed(11)
    whole = np.random.randn(6, 4).astype(np.float32)
    np.testing.assert_array_equal(np.concatenate(comm.allgather(mine)), whole)
    assert comm.allgather(after) == [np.random.rand()] * 2


def check_broadcast_object(group):
    value = {"step": 7, "order": np.arange(5) * (group.rank + 1)} if group.rank == 0 \
        else "ignored"
    got = group.broadcast_object(value)
    assert got["step"] == 7
    np.testing.assert_array_equal(got["order"], np.arange(5))


def count_calls(group):
    calls = []
    inner = group.all_reduce_sum

    def counted(array, what="all_reduce"):
        calls.append((array.size, str(array.dtype)))
        inner(array, what)

    group.all_reduce_sum = counted
    return calls


def restore(group):
    del group.all_reduce_sum  # back to the class's method


def main():
    group = dist.init(timeout=60)
    with dist.abort_on_error():
        assert dist.world_size() == 2 and group.backend == "mpi"
        comm = group.comm
        check_broadcast(comm)
        check_gradients(comm, group)
        check_optimizer(comm)
        check_all_reduce_sum(comm, group)
        check_sync_batch_norm(comm)
        check_shard_randn(comm)
        check_broadcast_object(group)
        report("collectives ok")


if __name__ == "__main__":
    main()
