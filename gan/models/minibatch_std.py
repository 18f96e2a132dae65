"""The minibatch standard-deviation layer of Karras et al. (2018), "Progressive Growing of
GANs", sec. 3: D sees how varied its batch is, so a generator that collapses to a few
outputs gives itself away.

For x (N, C, H, W) the batch is split into groups of G samples (sample n is in group
n mod N/G, as in the paper's code): per group, the standard deviation over its G samples of
every feature and pixel, sqrt(Var + 1e-8), averaged over C, H and W to one number; that
number is appended to each of the group's samples as one constant extra channel:
(N, C + 1, H, W). G is `group_size` (4, the paper's) or, when N is not a multiple of it,
the largest divisor of N below it, so any batch size works (N = 1 gives sqrt(1e-8)).
"""
from needle import nn, ops

__all__ = ["MinibatchStd"]


class MinibatchStd(nn.Module):
    def __init__(self, group_size=4, eps=1e-8):
        super().__init__()
        if int(group_size) != group_size or group_size < 1:
            raise ValueError(f"MinibatchStd: group_size must be an integer >= 1, got "
                             f"{group_size}")
        self.group_size, self.eps = int(group_size), eps

    def forward(self, x):
        if len(x.shape) != 4:
            raise ValueError(f"MinibatchStd: expected NCHW features, got shape {x.shape}")
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        m = n // g
        y = ops.reshape(x, (g, m, c, h, w))
        centred = y - ops.broadcast_to(ops.summation(y, axes=(0,)) / g, y.shape)
        std = ops.sqrt(ops.summation(centred * centred, axes=(0,)) / g + self.eps)
        per_group = ops.summation(ops.reshape(std, (m, c * h * w)), axes=(1,)) / (c * h * w)
        per_sample = ops.reshape(ops.broadcast_to(ops.reshape(per_group, (1, m)), (g, m)),
                                 (n, 1, 1, 1))
        return ops.concatenate([x, ops.broadcast_to(per_sample, (n, 1, h, w))], axis=1)

    def __repr__(self):
        return f"MinibatchStd(group_size={self.group_size})"
