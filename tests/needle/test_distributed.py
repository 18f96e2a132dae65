"""needle.distributed in one process: buckets, the sharded DataLoader, SyncBatchNorm on one
rank, failure handling, the import without mpi4py, and the NCCL code path.

The NCCL path runs against a fake `cupy.cuda.nccl` whose communicators sum, over two
threads (two ranks), the memory behind the device pointers they are given, on the CuPy
stand-in device (NumPy arrays answering CuPy's `.data.ptr`). That checks what needle hands
NCCL (pointers, element counts, datatypes, the stream, one call per bucket, the deadline and
the abort) but not NCCL or a GPU: it has not been run on one. Multi-process MPI runs are in
test_distributed_mpi.py.
"""
import ctypes
import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import needle as ndl
import needle.distributed as dist
from needle import nn
from needle.backend_ndarray import BackendDevice
from needle.backend_ndarray.ndarray_backend_cuda import make_cuda_backend
from needle.distributed import arrays, groups
from tests.support.cupy_standin import make_standin

nd_only = pytest.mark.nd_only


# ---- buckets -------------------------------------------------------------------------
def test_buckets_group_by_dtype_keep_order_and_respect_the_limit():
    pairs = [(np, np.zeros(10, np.float32)), (np, np.zeros(3, np.float64)),
             (np, np.zeros(20, np.float32)), (np, np.zeros(1, np.float32)),
             (np, np.zeros(100, np.float32))]
    # 40 + 80 B > 100 B closes the first float32 bucket; 80 + 4 fits; 400 B alone.
    assert arrays._plan(pairs, 100) == [[0], [1], [2, 3], [4]]
    assert arrays._plan(pairs, 10 ** 6) == [[0, 2, 3, 4], [1]]


def test_in_buckets_runs_one_collective_per_bucket_and_returns_each_array():
    rng = np.random.RandomState(0)
    datas = [rng.randn(3, 4).astype(np.float32), rng.randn(5), rng.randn(2).astype(np.float32)]
    flats = []

    def double(flat):
        flats.append((flat.size, flat.dtype))
        flat *= 2

    out = arrays.in_buckets(datas, 2 ** 20, double)
    assert flats == [(14, np.float32), (5, np.float64)]
    for got, data in zip(out, datas):
        assert got.shape == data.shape and got.dtype == data.dtype
        np.testing.assert_array_equal(got, data * 2)


@nd_only
def test_as_xp_and_like_round_trip_every_cpu_device():
    value = np.arange(12, dtype=np.float32).reshape(3, 4)
    for device in (ndl.cpu_numpy(), ndl.cpu()):
        data = ndl.Tensor(value, device=device).realize_cached_data()
        xp, array = arrays.as_xp(data)
        assert xp is np
        back = arrays.like(array * 3, data)
        assert back.device == device
        np.testing.assert_array_equal(back.numpy(), value * 3)


# ---- the sharded DataLoader -----------------------------------------------------------
def _dataset(n=26):
    return ndl.data.NDArrayDataset(np.arange(n, dtype=np.float32).reshape(n, 1),
                                   np.arange(n))


def _epoch(loader):
    return [batch[1].numpy() for batch in loader]


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_concatenated_in_rank_order_are_the_single_process_batches(shuffle):
    world, batch = 3, 2
    np.random.seed(5)
    single = _epoch(ndl.data.DataLoader(_dataset(), world * batch, shuffle, drop_last=True))
    shards = []
    for rank in range(world):
        np.random.seed(5)  # every rank seeds alike, so draws the same permutation
        loader = ndl.data.DataLoader(_dataset(), batch, shuffle, drop_last=True,
                                     shard=(rank, world))
        assert len(loader) == len(single) == 26 // 6
        shards.append(_epoch(loader))
    for k, whole in enumerate(single):
        np.testing.assert_array_equal(np.concatenate([s[k] for s in shards]), whole)
    if shuffle:
        assert not np.array_equal(np.concatenate(single), np.arange(24))


def test_a_loader_resumes_its_epoch_from_its_state():
    np.random.seed(1)
    loader = ndl.data.DataLoader(_dataset(), 2, shuffle=True, drop_last=True, shard=(1, 2))
    iterator = iter(loader)
    seen = [next(iterator)[1].numpy() for _ in range(3)]
    state = loader.state_dict()
    assert state["position"] == 3 and len(state["order"]) == 26
    rest = [batch[1].numpy() for batch in iterator]
    np.random.seed(99)  # a resumed process: the order comes from the state, not the RNG
    resumed = ndl.data.DataLoader(_dataset(), 2, shuffle=True, drop_last=True, shard=(1, 2))
    resumed.load_state_dict(state)
    again = _epoch(resumed)
    assert len(seen) + len(again) == len(loader)
    for a, b in zip(rest, again):
        np.testing.assert_array_equal(a, b)
    np.random.seed(7)
    fresh = _epoch(resumed)  # the next epoch draws a new order
    np.random.seed(7)
    np.testing.assert_array_equal(np.concatenate(fresh), np.concatenate(_epoch(
        ndl.data.DataLoader(_dataset(), 2, shuffle=True, drop_last=True, shard=(1, 2)))))


def test_a_finished_epoch_state_starts_a_new_epoch():
    loader = ndl.data.DataLoader(_dataset(), 4, drop_last=True)
    _epoch(loader)
    state = loader.state_dict()
    assert state == {"position": 6}
    loader.load_state_dict(state)
    assert len(_epoch(loader)) == 6


@pytest.mark.parametrize("kwargs, message", [
    (dict(shard=(0, 2)), "shard=(0, 2) needs drop_last=True"),
    (dict(shard=(2, 2), drop_last=True), "0 <= rank < world, got (2, 2)"),
    (dict(shard=(0, 0), drop_last=True), "0 <= rank < world, got (0, 0)"),
    (dict(shard=(0.5, 2), drop_last=True), "shard must be (rank, world), got (0.5, 2)"),
    (dict(shard=3, drop_last=True), "shard must be (rank, world), got 3"),
])
def test_bad_shards_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=r"^DataLoader: ") as error:
        ndl.data.DataLoader(_dataset(), 2, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_state_that_does_not_fit_the_loader_is_refused():
    loader = ndl.data.DataLoader(_dataset(), 2, shuffle=True, drop_last=True)
    with pytest.raises(ValueError, match="position 14 is outside this loader's 13 batches"):
        loader.load_state_dict({"position": 14})
    with pytest.raises(ValueError, match="needs the epoch's order of 26 indices, got 5"):
        loader.load_state_dict({"position": 1, "order": np.arange(5)})


# ---- one process: everything is the identity ------------------------------------------
def test_before_init_a_process_is_rank_0_of_1_and_collectives_change_nothing():
    assert not dist.is_initialized() and dist.rank() == 0 and dist.world_size() == 1
    model = nn.Linear(3, 2)
    before = model.state_dict()
    dist.broadcast_parameters(model)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    opt = dist.average_gradients(ndl.optim.SGD(model.parameters(), lr=0.5))
    assert type(opt).__name__ == "AveragingSGD" and isinstance(opt, ndl.optim.SGD)
    assert dist.average_gradients(opt) is opt and type(opt).__name__ == "AveragingSGD"
    x = ndl.Tensor(np.ones((4, 3), np.float32))
    model(x).sum().backward()
    grads = [p.grad.numpy() for p in model.parameters()]
    opt.step()
    for p, g, name in zip(model.parameters(), grads, ("weight", "bias")):
        np.testing.assert_allclose(p.numpy(), before[name] - 0.5 * g, rtol=1e-6)


def _bn_pair(dtype="float64"):
    np.random.seed(0)
    return nn.BatchNorm2d(3, dtype=dtype), nn.SyncBatchNorm(3, dtype=dtype)


def test_sync_batch_norm_on_one_process_is_batch_norm():
    plain, sync = _bn_pair()
    for layer in (plain, sync):
        layer.weight.data = ndl.Tensor(np.array([1.5, -0.5, 2.0]), dtype="float64")
    rng = np.random.RandomState(3)
    value, weights = rng.randn(5, 3, 4, 4) * 3 + 2, rng.randn(5, 3, 4, 4)
    results = []
    for layer in (plain, sync):
        x = ndl.Tensor(value, dtype="float64")
        y = layer(x)
        (y * ndl.Tensor(weights, dtype="float64")).sum().backward()
        results.append((y.numpy(), x.grad.numpy(), layer.weight.grad.numpy(),
                        layer.running_mean.numpy(), layer.running_var.numpy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    plain.eval(), sync.eval()
    x = ndl.Tensor(value, dtype="float64")
    np.testing.assert_allclose(sync(x).numpy(), plain(x).numpy(), rtol=1e-12)


def test_sync_batch_norm_differentiates_twice():
    _, sync = _bn_pair()
    x = ndl.Tensor(np.random.RandomState(4).randn(4, 3, 2, 2), dtype="float64")
    assert ndl.gradgradcheck(lambda t: sync(t) ** 2, x)


def test_sync_batch_norm_names_itself_on_a_bad_shape():
    with pytest.raises(ValueError, match=r"SyncBatchNorm: expected input \(N, C, \.\.\.\) "
                                         r"with 3 features on axis 1, got shape \(4, 2\)"):
        nn.SyncBatchNorm(3)(ndl.Tensor(np.zeros((4, 2), np.float32)))


def test_dcgan_models_take_norm_syncbatch():
    from gan.models.dcgan import Discriminator, Generator
    G, D = Generator(8, width=8, norm="syncbatch"), Discriminator(width=8, norm="syncbatch")
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in G._children()) == 2
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in D._children()) == 1
    with pytest.raises(ValueError, match="Generator: norm must be one of 'batch', "
                                         "'syncbatch', got 'none'"):
        Generator(8, width=8, norm="none")


# ---- failures --------------------------------------------------------------------------
class _FakeGroup:
    rank, size = 1, 2

    def __init__(self):
        self.aborted, self.barriers = [], []

    def abort(self, code=1):
        self.aborted.append(code)

    def barrier(self, what="barrier"):
        self.barriers.append(what)


def test_abort_on_error_prints_one_line_and_aborts(capsys):
    group = _FakeGroup()
    with dist.abort_on_error(group):
        raise ValueError("bad batch\nsecond line")
    assert group.aborted == [1]
    assert capsys.readouterr().err == "rank 1: ValueError: bad batch second line\n"
    with dist.abort_on_error(group):
        sys.exit(3)
    assert group.aborted == [1, 1]
    assert capsys.readouterr().err == "rank 1: exit status 3\n"


def test_abort_on_error_lets_success_and_single_processes_through():
    group = _FakeGroup()
    with pytest.raises(SystemExit):
        with dist.abort_on_error(group):
            sys.exit(0)
    with pytest.raises(KeyError):
        with dist.abort_on_error():  # no group: nothing to abort
            raise KeyError("x")
    assert group.aborted == []


def test_a_stop_every_rank_raises_waits_for_the_others_and_propagates():
    group = _FakeGroup()
    with pytest.raises(KeyError):
        with dist.abort_on_error(group, collective=(KeyError,)):
            raise KeyError("every rank stops here")
    assert group.barriers == ["the collective stop (KeyError)"] and group.aborted == []


def test_a_collective_that_never_completes_times_out_naming_rank_and_collective():
    with pytest.raises(dist.CollectiveTimeout, match=r"^needle.distributed: rank 3: gradient "
                                                     r"all-reduce did not complete on every "
                                                     r"rank within 0.05 s"):
        groups._wait(lambda: False, 0.05, 3, "gradient all-reduce")


@nd_only
def test_init_checks_its_arguments_before_touching_mpi():
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got 0"):
        dist.init(timeout=0)
    if not ndl.cuda().enabled():
        with pytest.raises(dist.DistributedError, match="device cuda\\(\\) is not available"):
            dist.init(device=ndl.cuda())


def test_needle_imports_without_mpi4py_and_init_says_what_to_install():
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'mpi4py': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy, needle, needle.distributed as dist\n"
        "from needle import nn\n"
        "nn.SyncBatchNorm(2)(needle.Tensor(numpy.array([[1, 2], [3, 5]], 'float32')))\n"
        "try:\n"
        "    dist.init()\n"
        "except ImportError as error:\n"
        "    print(error)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == dist.MPI_HINT + "\n"
    assert dist.MPI_HINT == ("needle.distributed needs mpi4py: "
                             "pip install 'needle-gan[distributed]'")


def test_plain_needle_does_not_import_mpi4py():
    out = subprocess.run([sys.executable, "-c", "import sys, needle, gan\n"
                          "print('mpi4py' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# ---- the NCCL path (fake NCCL, CuPy stand-in; not run on a GPU) ------------------------
class FakeNCCL:
    """cupy.cuda.nccl for `world` thread-ranks: collectives on raw device pointers."""

    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 6, 7, 8, 0
    _DTYPES = {6: np.float16, 7: np.float32, 8: np.float64}

    def __init__(self, world):
        self.world, self.barrier = world, threading.Barrier(world, timeout=30)
        self.slots, self.calls, self.created = [None] * world, [], []

    def get_unique_id(self):
        return b"unique-id-from-rank-0"

    def NcclCommunicator(self, ndev, unique_id, rank):
        self.created.append((ndev, unique_id, rank))
        return FakeCommunicator(self, rank)

    def memory(self, pointer, count, datatype):
        dtype = np.dtype(self._DTYPES[datatype])
        raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(pointer)
        return np.frombuffer(raw, dtype=dtype)


class FakeCommunicator:
    def __init__(self, nccl, rank):
        self.nccl, self.rank, self.aborted = nccl, rank, False

    def _exchange(self, value):
        self.nccl.slots[self.rank] = value
        self.nccl.barrier.wait()
        values = list(self.nccl.slots)
        self.nccl.barrier.wait()
        return values

    def allReduce(self, send, recv, count, datatype, op, stream):
        assert op == FakeNCCL.NCCL_SUM and stream == FakeStream.ptr
        self.nccl.calls.append(("allReduce", self.rank, count, datatype))
        values = self._exchange(self.nccl.memory(send, count, datatype).copy())
        self.nccl.memory(recv, count, datatype)[:] = np.sum(values, axis=0)

    def bcast(self, buff, count, datatype, root, stream):
        self.nccl.calls.append(("bcast", self.rank, count, datatype))
        values = self._exchange(self.nccl.memory(buff, count, datatype).copy())
        self.nccl.memory(buff, count, datatype)[:] = values[root]

    def check_async_error(self):
        pass

    def abort(self):
        self.aborted = True


class FakeStream:
    ptr = 1234

    def __init__(self, done=True):
        self.done = done


class FakeMPIGroup:
    """What nccl_group reads from an MPIGroup: rank, size, timeout, the shared-memory split
    and a pickled broadcast, over thread-ranks."""

    def __init__(self, rank, world, shared):
        self.rank, self.size, self.timeout, self.shared = rank, world, 5.0, shared
        self.MPI = types.SimpleNamespace(COMM_TYPE_SHARED="shared")
        local = types.SimpleNamespace(Get_rank=lambda: rank, Get_size=lambda: world)
        self.comm = types.SimpleNamespace(Split_type=lambda kind, key: local)

    def broadcast_object(self, value, root=0):
        if self.rank == root:
            self.shared["object"] = value
        self.shared["barrier"].wait()
        return self.shared["object"]


def _fake_cupy(nccl, used, gpus=2):
    cupy = make_standin()
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: gpus),
        Device=lambda i: types.SimpleNamespace(use=lambda: used.append(i)),
        get_current_stream=lambda: FakeStream(), nccl=nccl)
    return cupy


def _on_two_ranks(work):
    """Run work(rank, group, device) on two threads sharing a fake NCCL; return results."""
    nccl, shared, used = FakeNCCL(2), {"barrier": threading.Barrier(2, timeout=30)}, []
    device = BackendDevice("cuda", make_cuda_backend(make_standin()))
    results, errors = [None, None], []

    def rank_main(rank):
        try:
            cupy = _fake_cupy(nccl, used)
            group = groups.nccl_group(FakeMPIGroup(rank, 2, shared), cupy)
            results[rank] = work(rank, group, device)
        except BaseException as error:  # noqa: BLE001  (reported by the test thread)
            errors.append(error)
            nccl.barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results, nccl, sorted(used)


@nd_only
def test_nccl_group_setup_one_gpu_per_rank_and_rank_0s_id():
    (_, _), nccl, used = _on_two_ranks(lambda rank, group, device: None)
    assert used == [0, 1]
    assert sorted(nccl.created) == [(2, b"unique-id-from-rank-0", 0),
                                    (2, b"unique-id-from-rank-0", 1)]


@nd_only
def test_nccl_gradients_parameters_and_sync_batch_norm():
    def work(rank, group, device):
        assert group.backend == "nccl"
        rng = np.random.RandomState(rank)
        model = nn.Linear(3, 2, device=device, dtype="float32")
        for p in model.parameters():
            p.data = ndl.Tensor(rng.randn(*p.shape).astype(np.float32), device=device)
        dist.broadcast_parameters(model, group=group)
        start = {k: v.copy() for k, v in model.state_dict().items()}
        for p in model.parameters():
            p.grad = ndl.Tensor(rng.randn(*p.shape).astype(np.float32), device=device)
        grads = [p.grad.numpy().copy() for p in model.parameters()]
        dist.all_reduce_gradients(model.parameters(), group=group)
        averaged = [p.grad.numpy() for p in model.parameters()]
        bn = nn.SyncBatchNorm(2, group=group, device=device, dtype="float64")
        x_value, w_value = rng.randn(3, 2) * 2 + rank, rng.randn(3, 2)
        x = ndl.Tensor(x_value, device=device, dtype="float64")
        y = bn(x)
        (y * ndl.Tensor(w_value, device=device, dtype="float64")).sum().backward()
        return start, grads, averaged, (x_value, w_value), y.numpy(), x.grad.numpy()

    results, nccl, _ = _on_two_ranks(work)
    (start0, grads0, avg0, x0, y0, gx0), (start1, grads1, avg1, x1, y1, gx1) = results
    for name in start0:  # rank 0's weights everywhere
        np.testing.assert_array_equal(start1[name], start0[name])
    for a0, a1, g0, g1 in zip(avg0, avg1, grads0, grads1):
        np.testing.assert_allclose(a0, (g0 + g1) / 2, rtol=1e-6)
        np.testing.assert_array_equal(a0, a1)
    # one bcast for the two float32 parameters, one allReduce for their gradients
    kinds = [(kind, count, dtype) for kind, rank, count, dtype in nccl.calls if rank == 0]
    assert kinds[:2] == [("bcast", 8, FakeNCCL.NCCL_FLOAT32),
                         ("allReduce", 8, FakeNCCL.NCCL_FLOAT32)]
    # SyncBatchNorm: BatchNorm over both ranks' rows, forward and backward (torch oracle)
    both = np.concatenate([x0[0], x1[0]])
    torch = pytest.importorskip("torch")
    xt = torch.tensor(both, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, None, None, training=True, eps=1e-5)
    (yt * torch.tensor(np.concatenate([x0[1], x1[1]]))).sum().backward()
    np.testing.assert_allclose(np.concatenate([y0, y1]), yt.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(np.concatenate([gx0, gx1]), xt.grad.numpy(), rtol=1e-8,
                               atol=1e-12)
    # forward: the sums and the squared deviations; backward: the same two, reversed
    assert [kind for kind, rank, _, _ in nccl.calls if rank == 0].count("allReduce") == 5


def test_nccl_wait_has_a_deadline_and_aborts_the_communicator():
    nccl = FakeNCCL(1)
    comm = FakeCommunicator(nccl, 0)
    mpi = types.SimpleNamespace(rank=0, size=1, timeout=0.05)
    group = groups.NCCLGroup(nccl, comm, FakeStream(done=False), mpi)
    with pytest.raises(dist.CollectiveTimeout, match="rank 0: SyncBatchNorm mean did not"):
        group._finish("SyncBatchNorm mean")
    assert comm.aborted


def test_nccl_refuses_more_ranks_than_gpus_and_other_dtypes():
    nccl, used = FakeNCCL(1), []
    shared = {"barrier": threading.Barrier(1)}
    with pytest.raises(dist.DistributedError, match="2 ranks on this node but 1 GPU"):
        groups.nccl_group(FakeMPIGroup(0, 2, shared), _fake_cupy(nccl, used, gpus=1))
    group = groups.NCCLGroup(nccl, FakeCommunicator(nccl, 0), FakeStream(),
                             types.SimpleNamespace(rank=0, size=1, timeout=1.0))
    with pytest.raises(dist.DistributedError, match="NCCL takes float16, float32 or float64 "
                                                    "arrays here, got int64"):
        group.all_reduce_sum(make_standin().zeros(3, dtype=np.int64), "all_reduce")
