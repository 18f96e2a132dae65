"""matmul: the spec table's three checks, the course's batched shapes and tiled sizes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import needle as ndl
from needle.gradcheck import gradcheck
from tests.needle.ops.op_specs import check_forward, check_gradients, family
from tests.strategies import grad_settings, layouts

SPECS = family("matmul")


@pytest.mark.parametrize("spec", SPECS, ids=str)
@given(data=st.data())
def test_forward(spec, device, data):
    case = data.draw(spec.cases, label="case")
    check_forward(spec, case, device, data.draw(st.sampled_from(["float32", "float64"])))


@pytest.mark.parametrize("spec", SPECS, ids=str)
@given(data=st.data())
def test_forward_noncontiguous(spec, device, data):
    case = data.draw(spec.cases, label="case")
    views = [data.draw(layouts(x.ndim), label="layout") for x in case.arrays]
    check_forward(spec, case, device, "float32", views)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@grad_settings()
@given(data=st.data())
def test_gradcheck(spec, device, data):
    check_gradients(spec, data.draw(spec.cases, label="case"), device)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@grad_settings(divisor=5)
@given(data=st.data())
def test_gradgradcheck(spec, device, data):
    check_gradients(spec, data.draw(spec.cases, label="case"), device, second_order=True)


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
    ta, tb = ndl.Tensor(a, device=device), ndl.Tensor(b, device=device)
    out = ndl.matmul(ta, tb)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-12)
    (out * ndl.Tensor(weights, device=device)).sum().backward()
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
