"""Matrix multiplication, with NumPy broadcasting of batch axes."""
from ..autograd import TensorOp, needs_grad
from ..backend_selection import array_api
from .shape import sum_to_shape, transpose

__all__ = ["MatMul", "matmul"]


class MatMul(TensorOp):
    """a @ b for a (..., m, n) and b (..., n, p); batch axes broadcast as in NumPy.

    Gradients: a' = out_grad @ b^T and b' = a^T @ out_grad, summed over broadcast batch axes.
    """

    def compute(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                             "(need (..., m, n) @ (..., n, p))")
        return array_api.matmul(a, b)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        grad_a = sum_to_shape(matmul(out_grad, transpose(b)), a.shape) \
            if needs_grad(a) else None
        grad_b = sum_to_shape(matmul(transpose(a), out_grad), b.shape) \
            if needs_grad(b) else None
        return grad_a, grad_b


def matmul(a, b):
    return MatMul()(a, b)
