"""matmul beyond the spec table (test_op_specs.py): the course's batched shapes, tiled sizes."""
import numpy as np
import pytest

import needle as ndl
from needle.gradcheck import gradcheck


def _sum_to(x, shape):
    """NumPy: undo broadcasting by summing new leading axes and stretched size-1 axes."""
    x = x.sum(axis=tuple(range(x.ndim - len(shape))))
    return x.sum(axis=tuple(i for i, d in enumerate(shape) if d == 1), keepdims=True)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((6, 6, 5, 4), (4, 3)), ((5, 4), (6, 6, 4, 3)), ((6, 1, 5, 4), (3, 4, 2)),
    ((16, 8), (8, 24)),  # multiples of cpu()'s tile size 8: the tiled kernel
    ((9, 7), (7, 10)), ((8, 8), (8, 3)),
], ids=str)
def test_course_shapes_forward_and_gradients(a_shape, b_shape, device):
    """Broadcast batch axes are summed out of the gradients; tiled sizes agree too."""
    rng = np.random.default_rng(sum(a_shape) + sum(b_shape))
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    weights = rng.standard_normal(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
                                  + (a_shape[-2], b_shape[-1]))
    ta, tb = (ndl.Tensor(x, device=device, dtype="float64") for x in (a, b))
    out = ndl.matmul(ta, tb)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-12)
    (out * ndl.Tensor(weights, device=device, dtype="float64")).sum().backward()
    grad_a = _sum_to(weights @ np.swapaxes(b, -1, -2), a_shape)
    grad_b = _sum_to(np.swapaxes(a, -1, -2) @ weights, b_shape)
    np.testing.assert_allclose(ta.grad.numpy(), grad_a, rtol=1e-10)
    np.testing.assert_allclose(tb.grad.numpy(), grad_b, rtol=1e-10)
    assert gradcheck(ndl.matmul, ta, tb)


def test_float32_tiled_matmul_matches_numpy(device):
    """The tiled path on cpu() and the BLAS path must agree in the course's float32."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((24, 16)).astype(np.float32)
    b = rng.standard_normal((16, 32)).astype(np.float32)
    out = ndl.matmul(ndl.Tensor(a, device=device), ndl.Tensor(b, device=device))
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
