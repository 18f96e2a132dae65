"""ops.grad_reverse: the identity forward; -scale times the gradient backward, at first and
second order (the reversal the domain-adversarial recipe relies on)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from tests.strategies import arrays, shapes


@settings(max_examples=25, deadline=None)
@given(x=shapes().flatmap(arrays), scale=st.floats(0.0, 3.0))
def test_identity_forward_reversed_scaled_gradient(x, scale):
    t = ndl.Tensor(x, dtype="float64")
    out = ndl.grad_reverse(t, scale)
    np.testing.assert_array_equal(out.numpy(), x)
    # f = sum(y^3) on y = R(x): df/dx = -scale * 3 y^2; differentiating that again passes
    # through R once more: d(sum df/dx)/dx = (-scale)^2 * 6 x (PyTorch's custom-Function
    # reversal gives the same)
    (first,) = ndl.grad([ndl.summation(out * out * out)], [t], create_graph=True)
    np.testing.assert_allclose(first.numpy(), -scale * 3 * x ** 2, rtol=1e-12, atol=1e-300)
    (second,) = ndl.grad([ndl.summation(first)], [t])
    np.testing.assert_allclose(second.numpy(), scale ** 2 * 6 * x, rtol=1e-12, atol=1e-300)


@settings(max_examples=10, deadline=None)
@given(x=shapes(max_dims=2).flatmap(arrays))
def test_reversal_only_below_it(x):
    """Layers above the reversal get their usual gradient; the input below gets minus it."""
    w = ndl.Tensor(np.full(x.shape, 0.5), dtype="float64")
    t = ndl.Tensor(x, dtype="float64")
    loss = ndl.summation(ndl.grad_reverse(t) * w * ndl.grad_reverse(t))  # 0.5 * x^2
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), x * x, rtol=1e-12)
    # two reversals on the two paths: each contributes -(0.5 x); the sum is -x
    np.testing.assert_allclose(t.grad.numpy(), -x, rtol=1e-12)
