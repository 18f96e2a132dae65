"""Mistakes fail loudly at the op boundary, naming the op and what was wrong (STYLE 9)."""
import re

import numpy as np
import pytest

import needle as ndl
from needle.autograd import TensorOp
from needle.gradcheck import GradcheckError, gradcheck


@pytest.mark.parametrize("name, op", [("add", ndl.add), ("multiply", ndl.multiply),
                                      ("divide", ndl.divide), ("power", ndl.power),
                                      ("maximum", ndl.maximum)])
def test_binary_ops_name_both_shapes(name, op, device):
    """needle never broadcasts implicitly: (2, 3) with (3, 2) or (1, 3) is an error."""
    a = ndl.Tensor(np.ones((2, 3)), device=device)
    for other_shape in [(3, 2), (1, 3)]:
        b = ndl.Tensor(np.ones(other_shape), device=device)
        with pytest.raises(ValueError) as error:
            op(a, b)
        message = str(error.value)
        assert name in message and "(2, 3)" in message and str(other_shape) in message


def test_matmul_names_both_shapes(device):
    a = ndl.Tensor(np.ones((2, 3)), device=device)
    b = ndl.Tensor(np.ones((4, 5)), device=device)
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        ndl.matmul(a, b)
    with pytest.raises(ValueError, match=r"matmul.*\(3,\)"):
        ndl.matmul(a, ndl.Tensor(np.ones(3), device=device))


def test_reshape_names_both_shapes(device):
    a = ndl.Tensor(np.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        ndl.reshape(a, (4, 2))
    with pytest.raises(ValueError, match=r"broadcast_to.*\(2, 3\).*\(3, 3\)"):
        ndl.broadcast_to(a, (3, 3))


@pytest.mark.parametrize("op", [ndl.add, ndl.multiply, ndl.divide, ndl.maximum, ndl.matmul])
def test_mixing_float32_and_float64_is_a_type_error(op, device):
    """A silent upcast would double memory and hide a float64 leak into training."""
    a = ndl.Tensor(np.ones((2, 2), dtype=np.float32), device=device)
    b = ndl.Tensor(np.ones((2, 2)), device=device, dtype="float64")
    with pytest.raises(TypeError) as error:
        op(a, b)
    assert "float32" in str(error.value) and "float64" in str(error.value)


def test_mixing_devices_names_both():
    a = ndl.Tensor(np.ones(3), device=ndl.cpu_numpy())
    b = ndl.Tensor(np.ones(3), device=ndl.cpu())
    for op in (ndl.add, ndl.multiply):
        with pytest.raises(ValueError) as error:
            op(a, b)
        assert "cpu_numpy()" in str(error.value) and "cpu()" in str(error.value)
    np.testing.assert_array_equal((a + b.to(ndl.cpu_numpy())).numpy(), [2.0, 2.0, 2.0])


def test_gradcheck_refuses_float32_inputs():
    """Central differences in float32 are noise; the check must say so, not pass or fail."""
    with pytest.raises(TypeError, match="float64"):
        gradcheck(ndl.tanh, ndl.Tensor(np.ones(3, dtype=np.float32)))
    with pytest.raises(TypeError, match="Tensor"):
        gradcheck(ndl.tanh, np.ones(3))


class _SquareWithOneBadElement(TensorOp):
    """x**2 whose gradient is 3x instead of 2x at element (1, 2) only."""

    def compute(self, a):
        return a * a

    def gradient(self, out_grad, node):
        x = node.inputs[0]
        factor = np.full(x.shape, 2.0)
        factor[1, 2] = 3.0
        return out_grad * x * ndl.Tensor(factor, device=x.device, dtype=x.dtype,
                                          requires_grad=False)


def test_gradcheck_reports_the_worst_element_with_both_values(device):
    x = ndl.Tensor(np.random.default_rng(0).uniform(0.5, 2.0, (3, 4)), device=device,
                   dtype="float64")
    with pytest.raises(GradcheckError) as error:
        gradcheck(lambda t: _SquareWithOneBadElement()(t), x, name="bad_square")
    message = str(error.value)
    assert "bad_square" in message and "input 0" in message and "(1, 2)" in message
    analytic, numeric = (float(v) for v in re.search(
        r"worst element \(1, 2\): analytic (\S+), numeric (\S+)", message).groups())
    assert analytic == pytest.approx(1.5 * numeric, rel=1e-4)  # 3x vs 2x
