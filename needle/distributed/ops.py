"""The one differentiable collective: a sum over ranks inside the graph (SyncBatchNorm).

With y = sum over ranks r of x_r on every rank and the job's loss the sum of the ranks'
losses, dL/dx_r = sum over ranks s of dL_s/dy: the gradient of an all-reduce is the
all-reduce of the output gradients. Backward is built from the same op, so it runs
(and differentiates again) in every rank's backward pass in the same order.
"""
from ..autograd import TensorOp
from .arrays import as_xp, like

__all__ = ["AllReduceSum", "all_reduce_sum"]


class AllReduceSum(TensorOp):
    """Elementwise sum of `a` over the ranks of `group`; the identity on one process."""

    def __init__(self, group, what="all_reduce_sum"):
        self.group, self.what = group, what

    def compute(self, a):
        if self.group is None or self.group.size == 1:
            return a + 0  # a new array: an op's output never aliases its input
        xp, array = as_xp(a)
        total = xp.array(array, copy=True, order="C")
        self.group.all_reduce_sum(total.reshape(-1), self.what)
        return like(total, a)

    def gradient(self, out_grad, node):
        return all_reduce_sum(out_grad, self.group, self.what + " (backward)")


def all_reduce_sum(a, group, what="all_reduce_sum"):
    return AllReduceSum(group, what)(a)
