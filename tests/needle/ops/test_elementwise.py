"""Elementwise ops beyond the spec table (test_op_specs.py): stability and kink conventions."""
import numpy as np
import pytest

import needle as ndl


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logistic_family_is_stable_at_large_logits(device, dtype):
    """softplus/log_sigmoid/sigmoid at +-1000: exact values, finite grads, no warnings."""
    values = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    expected = {  # NumPy's logaddexp is stable; 1/(1+exp(-x)) only warns for x << 0
        ndl.softplus: np.logaddexp(0.0, values),
        ndl.log_sigmoid: -np.logaddexp(0.0, -values),
        ndl.sigmoid: np.exp(-np.logaddexp(0.0, -values)),
    }
    derivative = {ndl.softplus: expected[ndl.sigmoid],
                  ndl.log_sigmoid: np.exp(-np.logaddexp(0.0, values)),
                  ndl.sigmoid: expected[ndl.sigmoid] * np.exp(-np.logaddexp(0.0, values))}
    for fn, reference in expected.items():
        x = ndl.Tensor(values, device=device, dtype=dtype)
        y = fn(x)
        y.sum().backward()
        tolerance = 1e-6 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(y.numpy(), reference, rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(x.grad.numpy(), derivative[fn], rtol=tolerance,
                                   atol=tolerance)


@pytest.mark.parametrize("scalar", [np.float64(2.5), np.array([2.5]), 2.5],
                         ids=["numpy-scalar", "one-element-array", "python-float"])
@pytest.mark.parametrize("op, reference", [
    (ndl.add_scalar, np.add), (ndl.mul_scalar, np.multiply),
    (ndl.divide_scalar, np.divide), (ndl.power_scalar, np.power)])
def test_scalar_ops_accept_numpy_scalars_without_upcasting(op, reference, scalar, device):
    """hw1 passes 1-element arrays as scalars; a float32 Tensor must stay float32."""
    x = np.random.default_rng(0).uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    out = op(ndl.Tensor(x, device=device), scalar)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), reference(x.astype(np.float64), 2.5), rtol=1e-6)


def _grad_of_sum(fn, *arrays, device):
    tensors = [ndl.Tensor(a, device=device, dtype="float64") for a in arrays]
    fn(*tensors).sum().backward()
    return [t.grad.numpy() for t in tensors]


def test_derivatives_at_kinks_follow_the_documented_conventions(device):
    """relu'(0) = 0, abs'(0) = 0, leaky_relu'(0) = slope, maximum splits ties evenly."""
    x = [-2.0, 0.0, 3.0]
    np.testing.assert_array_equal(_grad_of_sum(ndl.relu, x, device=device)[0], [0, 0, 1])
    np.testing.assert_array_equal(_grad_of_sum(ndl.abs, x, device=device)[0], [-1, 0, 1])
    np.testing.assert_allclose(
        _grad_of_sum(lambda t: ndl.leaky_relu(t, 0.2), x, device=device)[0], [0.2, 0.2, 1])
    grad_a, grad_b = _grad_of_sum(ndl.maximum, [1.0, 2.0, 3.0], [1.0, 5.0, 0.0],
                                  device=device)
    np.testing.assert_allclose(grad_a, [0.5, 0, 1])
    np.testing.assert_allclose(grad_b, [0.5, 1, 0])
    grad_a, grad_b = _grad_of_sum(ndl.minimum, [1.0, 2.0, 3.0], [1.0, 5.0, 0.0],
                                  device=device)
    np.testing.assert_allclose(grad_a, [0.5, 1, 0])
    np.testing.assert_allclose(grad_b, [0.5, 0, 1])
    inside = _grad_of_sum(lambda t: ndl.clip(t, -1.0, 1.0), [-2.0, -1.0, 0.5, 1.0, 2.0],
                          device=device)[0]
    np.testing.assert_array_equal(inside, [0, 1, 1, 1, 0])


def test_power_gradient_wrt_exponent_is_a_pow_b_log_a(device):
    """The course's power differentiates both inputs: d/db a^b = a^b log a."""
    a = np.array([0.5, 1.0, 2.0, 3.0])
    b = np.array([2.0, -1.0, 0.5, 0.0])
    grad_a, grad_b = _grad_of_sum(ndl.power, a, b, device=device)
    np.testing.assert_allclose(grad_a, b * a ** (b - 1))
    np.testing.assert_allclose(grad_b, a ** b * np.log(a))
