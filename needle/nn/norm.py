"""Normalisation layers: BatchNorm1d/2d, SyncBatchNorm, LayerNorm1d, InstanceNorm2d.

Each normalises over a set of axes with the *biased* variance and eps inside the square root,

    y = (x - mean) / sqrt(var + eps) * weight + bias,

and runs as one `ops.Normalize` plus the affine ops, except BatchNorm's training forward:
one `ops.BatchNormalize`, normalisation and affine together, which cpu_numpy() runs as two
fused passes each way where the native module is built. Their gradients are built from ops
whenever a graph is recorded, so gradient penalties such as WGAN-GP can differentiate
through these layers twice. `weight` and `bias` are 1-D Parameters, ones and zeros.
"""
import math

from .. import distributed, init, ops
from ..autograd import Tensor
from ..backend_selection import array_api
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "SyncBatchNorm", "LayerNorm1d", "InstanceNorm2d"]


def _along(vector, axis, shape):
    """Broadcast a 1-D tensor laid out along `axis` to `shape`."""
    kept = tuple(d if i == axis else 1 for i, d in enumerate(shape))
    return ops.broadcast_to(ops.reshape(vector, kept), shape)


def _normalize(x, axes, eps):
    """((x - mean) / sqrt(var + eps), mean, var) over `axes`: one ops.Normalize, whose batch
    statistics come back as constant Tensors with the axes kept."""
    x_hat, mean, var = ops.Normalize(axes, eps).with_statistics(x)
    return x_hat, Tensor.make_const(mean), Tensor.make_const(var)


def _affine(x_hat, weight, bias, axis):
    return x_hat * _along(weight, axis, x_hat.shape) + _along(bias, axis, x_hat.shape)


def _check_input(layer, x, ndims, axis, size, layout):
    """Raise, naming the layer, unless x.ndim is in `ndims` (None: any) and shape[axis] fits."""
    if (ndims is not None and x.ndim not in ndims) or x.shape[axis] != size:
        raise ValueError(f"{type(layer).__name__}: expected input {layout} with "
                         f"{size} features on axis {axis}, got shape {x.shape}")


class BatchNorm1d(Module):
    """Batch normalisation over the batch axis of (N, C) input (or (N, C, L), as PyTorch).

    Training: normalise with the batch mean and biased variance over every axis but C, and
    update running = (1 - momentum) * running + momentum * batch_stat, with the biased
    variance too (the course's convention; PyTorch uses the unbiased one for running_var).
    The update records no graph. Evaluation: normalise with the running statistics.
    `running_mean` (zeros) and `running_var` (ones) are buffers, not parameters.
    """

    _ndims, _layout = (2, 3), "(N, C) or (N, C, L)"

    def __init__(self, dim, eps=1e-5, momentum=0.1, device=None, dtype="float32"):
        super().__init__()
        self.dim, self.eps, self.momentum = dim, eps, momentum
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))
        self.register_buffer("running_mean", init.zeros(dim, device=device, dtype=dtype))
        self.register_buffer("running_var", init.ones(dim, device=device, dtype=dtype))

    def forward(self, x):
        _check_input(self, x, self._ndims, 1, self.dim, self._layout)
        if self.training:
            y, mean, var = ops.BatchNormalize(1, self.eps).with_statistics(
                x, self.weight, self.bias)
            self._update_running_stats(Tensor.make_const(mean), Tensor.make_const(var))
            return y
        mean = _along(self.running_mean, 1, x.shape)
        var = _along(self.running_var, 1, x.shape)
        x_hat = (x - mean) / (var + self.eps) ** 0.5
        return _affine(x_hat, self.weight, self.bias, 1)

    def _update_running_stats(self, mean, var):
        """running = (1 - momentum) * running + momentum * batch, on arrays: no graph."""
        m = float(self.momentum)  # a NumPy float64 would promote float32 buffers
        for buffer, batch in ((self.running_mean, mean), (self.running_var, var)):
            batch = array_api.reshape(batch.realize_cached_data(), (self.dim,))
            buffer.data = Tensor.make_const(buffer.realize_cached_data() * (1 - m) + batch * m)


class BatchNorm2d(BatchNorm1d):
    """BatchNorm1d's numerics on NCHW input, reducing over (N, H, W) directly (no transposes).

    Shapes: x (N, C, H, W) -> (N, C, H, W); `dim` is C.
    """

    _ndims, _layout = (4,), "(N, C, H, W)"


class SyncBatchNorm(BatchNorm1d):
    """Batch normalisation over the global batch of data-parallel ranks (needle.distributed).

    Plain BatchNorm on N ranks normalises each rank's slice with that slice's statistics;
    SyncBatchNorm sums the per-channel sums (and counts) over the ranks, then the squared
    deviations from the global mean, so every rank normalises with the mean and biased
    variance of the whole global batch, as one process holding it would. Both sums are
    `distributed.all_reduce_sum` ops, whose gradient is the all-reduce of the output
    gradients, so the backward pass all-reduces too and the layer stays differentiable
    (twice, for gradient penalties). Two collectives per training forward, each rank calling
    the layer in the same order. `group` defaults to the one `distributed.init()` made; with
    none (one process) it computes BatchNorm's numbers. Evaluation uses the running
    statistics, updated as BatchNorm1d's, from the global ones (so equal on every rank).

    Shapes: x (N, C, *) -> (N, C, *), reducing over every axis but C; `dim` is C.
    """

    _ndims, _layout = (2, 3, 4, 5), "(N, C, ...)"

    def __init__(self, dim, eps=1e-5, momentum=0.1, group=None, device=None,
                 dtype="float32"):
        super().__init__(dim, eps, momentum, device=device, dtype=dtype)
        self.group = group

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        _check_input(self, x, self._ndims, 1, self.dim, self._layout)
        group = distributed.get_group() if self.group is None else self.group
        axes = tuple(i for i in range(x.ndim) if i != 1)
        count = init.constant(self.dim, c=float(math.prod(x.shape[a] for a in axes)),
                              device=x.device, dtype=x.dtype)
        totals = distributed.all_reduce_sum(ops.stack([ops.summation(x, axes), count], 0),
                                            group, "SyncBatchNorm mean")
        sums, counts = ops.split(totals, 0)
        n = float(counts.numpy()[0])  # the global batch's elements per channel
        mean = sums / n
        centered = x - _along(mean, 1, x.shape)
        var = distributed.all_reduce_sum(ops.summation(centered * centered, axes), group,
                                         "SyncBatchNorm variance") / n
        x_hat = centered * _along((var + self.eps) ** -0.5, 1, x.shape)
        self._update_running_stats(mean, var)
        return _affine(x_hat, self.weight, self.bias, 1)


class LayerNorm1d(Module):
    """Normalise each vector along the last axis: x (..., dim) -> (..., dim).

    Biased variance, eps inside the square root; `weight` ones (dim,), `bias` zeros (dim,).
    """

    def __init__(self, dim, eps=1e-5, device=None, dtype="float32"):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))

    def forward(self, x):
        axis = x.ndim - 1
        _check_input(self, x, None, axis, self.dim, "(..., dim)")
        x_hat, _, _ = _normalize(x, (axis,), self.eps)
        return _affine(x_hat, self.weight, self.bias, axis)


class InstanceNorm2d(Module):
    """Normalise each (sample, channel) plane over H and W: (N, C, H, W) -> (N, C, H, W).

    As PyTorch's InstanceNorm2d with its defaults (used by CycleGAN): no running
    statistics, so training and evaluation agree; with `affine`, a per-channel `weight`
    (ones) and `bias` (zeros) follow.
    """

    def __init__(self, num_features, eps=1e-5, affine=False, device=None, dtype="float32"):
        super().__init__()
        self.num_features, self.eps, self.affine = num_features, eps, affine
        if affine:
            self.weight = Parameter(init.ones(num_features, device=device, dtype=dtype))
            self.bias = Parameter(init.zeros(num_features, device=device, dtype=dtype))

    def forward(self, x):
        _check_input(self, x, (4,), 1, self.num_features, "(N, C, H, W)")
        x_hat, _, _ = _normalize(x, (2, 3), self.eps)
        return _affine(x_hat, self.weight, self.bias, 1) if self.affine else x_hat
