"""Data parallelism: same start on every rank, averaged gradients, one-line failures.

    broadcast_parameters(module)       parameters and buffers from rank 0 to every rank
    all_reduce_gradients(params)       each .grad becomes the mean over ranks (bucketed)
    average_gradients(optimizer)       from then on optimizer.step() does the above first
    shard_randn(rows, dim)             this rank's rows of the global batch's noise
    abort_on_error()                   an exception on one rank ends every rank, named

Gradients travel in flat buckets of about `bucket_mb` MB (one all-reduce per bucket, not
per parameter), summed by the group and scaled by 1/world. Every rank must ask for the same
parameters with gradients in the same order (the same code on every rank): the buckets are
laid out from that list alone.
"""
import contextlib
import sys

from .. import init
from ..autograd import Tensor
from .arrays import in_buckets

__all__ = ["broadcast_parameters", "all_reduce_gradients", "average_gradients",
           "shard_randn", "abort_on_error", "DEFAULT_BUCKET_MB"]

DEFAULT_BUCKET_MB = 25.0


def _group(group):
    from . import get_group  # the group init() made, when none is passed
    return get_group() if group is None else group


def _tensors(module):
    """The module's parameters and buffers, in state_dict order."""
    return [value for _, kind, value in module._walk() if kind != "module"]


def broadcast_parameters(module, root=0, group=None, bucket_mb=DEFAULT_BUCKET_MB):
    """Overwrite every parameter and buffer (e.g. BatchNorm's running statistics) of
    `module` with root's values, in place (Parameter objects, and so optimizer references,
    stay the same). Call once after building the models, before the first step."""
    group = _group(group)
    if group is None or group.size == 1:
        return
    tensors = _tensors(module)
    datas = [tensor.realize_cached_data() for tensor in tensors]
    results = in_buckets(datas, int(bucket_mb * 2 ** 20),
                         lambda flat: group.broadcast(flat, root, "parameter broadcast"))
    for tensor, data in zip(tensors, results):
        tensor.data = Tensor.make_const(data)


def all_reduce_gradients(params, group=None, bucket_mb=DEFAULT_BUCKET_MB):
    """Replace each parameter's `.grad` by its mean over the ranks: one all-reduce (sum)
    per bucket of about `bucket_mb` MB, then a scale by 1/world. Parameters without a
    gradient are left out (on every rank alike)."""
    group = _group(group)
    if group is None or group.size == 1:
        return
    with_grad = [p for p in params if getattr(p, "grad", None) is not None]
    scale = 1.0 / group.size  # a Python float keeps float32 buffers float32

    def average(flat):
        group.all_reduce_sum(flat, "gradient all-reduce")
        flat *= scale

    results = in_buckets([p.grad.realize_cached_data() for p in with_grad],
                         int(bucket_mb * 2 ** 20), average)
    for param, data in zip(with_grad, results):
        param.grad = Tensor.make_const(data)


class _AveragingStep:
    """Mixed in before an optimizer's class: step() averages the gradients first."""

    def step(self):
        all_reduce_gradients(self.params, self._distributed_group, self._bucket_mb)
        super().step()


_CLASSES = {}


def average_gradients(optimizer, group=None, bucket_mb=DEFAULT_BUCKET_MB):
    """Make `optimizer.step()` average the gradients of `optimizer.params` over the ranks
    before updating; returns the optimizer (the same object, its class now a subclass that
    adds the averaging, so its state, state_dict and learning rate are untouched).

    A training step stays the same code on one process and on many:

        opt = ndl.distributed.average_gradients(ndl.optim.Adam(model.parameters()))
        opt.reset_grad(); loss.backward(); opt.step()    # step all-reduces, then updates

    Figures read from the gradients between backward and step (gradient norms) are the
    rank's own, before averaging.
    """
    cls = type(optimizer)
    if not issubclass(cls, _AveragingStep):
        if cls not in _CLASSES:
            _CLASSES[cls] = type(f"Averaging{cls.__name__}", (_AveragingStep, cls),
                                 {"__module__": cls.__module__})
        optimizer.__class__ = _CLASSES[cls]
    optimizer._distributed_group, optimizer._bucket_mb = group, bucket_mb
    return optimizer


def shard_randn(rows, dim, device=None, dtype="float32", group=None):
    """This rank's `rows` rows of a (world * rows, dim) standard-normal draw, as a constant
    Tensor: every rank draws the whole global batch from the same generator (NumPy's global
    RNG, seeded alike, so the ranks' generators stay in step) and keeps rows
    [rank * rows, (rank + 1) * rows), the rows one process drawing the global batch would
    give that slice. On one process it is `init.randn(rows, dim)`."""
    group = _group(group)
    if group is None or group.size == 1:
        return init.randn(rows, dim, device=device, dtype=dtype)
    everyone = init.randn(group.size * rows, dim, device=device, dtype=dtype)
    mine = everyone.numpy()[group.rank * rows:(group.rank + 1) * rows]
    return Tensor(mine, device=everyone.device, dtype=dtype, requires_grad=False)


def _one_line(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def abort_on_error(group=None, collective=()):
    """Run a block so that an exception on any rank ends the whole job: the rank prints
    `rank R: Type: message` (one line) to stderr and calls MPI_Abort, which makes mpiexec
    stop every rank, instead of the others waiting for ever in their next collective.
    KeyboardInterrupt and a non-zero SystemExit count as errors.

    `collective`: exception types every rank raises at the same point (a stop all ranks
    agreed on): those wait at a barrier, so rank 0 finishes writing before any rank leaves,
    and propagate. On one process (or before init) every exception propagates unchanged."""
    group = _group(group)
    try:
        yield
    except BaseException as error:
        if group is None or group.size == 1 or (isinstance(error, SystemExit)
                                                and error.code in (None, 0)):
            raise
        if isinstance(error, collective):
            group.barrier(f"the collective stop ({type(error).__name__})")
            raise
        if isinstance(error, SystemExit):
            line = f"exit status {error.code}" if isinstance(error.code, int) else \
                " ".join(str(error.code).split())
        else:
            line = _one_line(error)
        print(f"rank {group.rank}: {line}", file=sys.stderr, flush=True)
        group.abort(1)
