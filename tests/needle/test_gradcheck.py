"""needle.gradcheck itself: it must pass correct gradients and catch wrong ones.

A checker that cannot fail proves nothing, so each check meets a deliberately broken op.
"""
import numpy as np
import pytest

import needle as ndl
from needle.autograd import TensorOp
from needle.gradcheck import GradcheckError, gradcheck, gradgradcheck


def _tensor(shape, seed=0, low=-2.0, high=2.0, device=None):
    return ndl.Tensor(np.random.default_rng(seed).uniform(low, high, shape), device=device,
                      dtype="float64")


def test_passes_on_correct_functions(device):
    x, w = _tensor((3, 4), device=device), _tensor((4, 2), seed=1, device=device)
    assert gradcheck(lambda x: ndl.tanh(x) * x, x)
    assert gradcheck(lambda x, w: ndl.logsoftmax(x @ w), x, w)
    assert gradcheck(lambda x: ndl.split(x, 0).tuple(), x)  # several outputs
    assert gradgradcheck(lambda x, w: ndl.sigmoid(x @ w), x, w)


class _ScaledExp(TensorOp):
    """exp(x) with a gradient scaled by `factor` (1.0 is correct) for input `index`."""

    def __init__(self, factor):
        self.factor = factor

    def compute(self, a, b):
        return a.exp() * b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * node * self.factor, out_grad * ndl.exp(a)


def test_catches_a_wrong_first_derivative_and_names_the_input(device):
    a, b = _tensor((2, 3), device=device), _tensor((2, 3), seed=1, device=device)
    assert gradcheck(lambda a, b: _ScaledExp(1.0)(a, b), a, b)
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda a, b: _ScaledExp(1.01)(a, b), a, b)


class _SwappedExp(TensorOp):
    """exp(a) * b whose gradient for b is off (exp(a) + 0.1): the second input is named."""

    def compute(self, a, b):
        return a.exp() * b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * node, out_grad * (ndl.exp(a) + 0.1)


def test_names_the_second_input_when_it_is_wrong(device):
    a, b = _tensor((2, 3), device=device), _tensor((2, 3), seed=1, low=0.5, device=device)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(2, 3\)\)"):
        gradcheck(lambda a, b: _SwappedExp()(a, b), a, b)


class _SquareFromRawArrays(TensorOp):
    """x**2 whose gradient 2x is built from a raw-array constant (STYLE anti-pattern 5).

    First derivatives are right, but the gradient no longer depends on x in the graph, so
    its own derivative comes out 0 instead of 2: only gradgradcheck can see that.
    """

    def compute(self, a):
        return a * a

    def gradient(self, out_grad, node):
        doubled = node.inputs[0].realize_cached_data() * 2.0
        return out_grad * ndl.Tensor.make_const(doubled)


def test_gradgradcheck_catches_a_wrong_second_derivative(device):
    x = _tensor((3, 2), device=device)
    assert gradcheck(lambda x: _SquareFromRawArrays()(x), x)
    with pytest.raises(GradcheckError, match="gradient of"):
        gradgradcheck(lambda x: _SquareFromRawArrays()(x), x)
    assert gradgradcheck(lambda x: x * x, x)


class _CubeWithWrongCurvature(TensorOp):
    """x**3 with gradient x * const(3x): the value 3x^2 is right, but half of it is detached,
    so the second derivative comes out 3x instead of 6x."""

    def compute(self, a):
        return a * a * a

    def gradient(self, out_grad, node):
        x = node.inputs[0]
        return out_grad * x * ndl.Tensor.make_const(x.realize_cached_data() * 3.0)


def test_gradgradcheck_catches_a_partly_detached_gradient(device):
    x = _tensor((4,), seed=3, low=0.5, high=2.0, device=device)
    assert gradcheck(lambda x: _CubeWithWrongCurvature()(x), x)
    with pytest.raises(GradcheckError):
        gradgradcheck(lambda x: _CubeWithWrongCurvature()(x), x)


class _CubeGrad(TensorOp):
    """3x^2, the derivative of x^3, with its own derivative written as 5x (6x is right)."""

    def compute(self, a):
        return a * a * 3.0

    def gradient(self, out_grad, node):
        return out_grad * node.inputs[0] * 5.0


class _Cube(TensorOp):
    def compute(self, a):
        return a * a * a

    def gradient(self, out_grad, node):
        return out_grad * _CubeGrad()(node.inputs[0])


def test_gradgradcheck_catches_a_wrong_constant_in_the_gradient_op(device):
    x = _tensor((2, 2), seed=4, low=0.5, high=2.0, device=device)
    assert gradcheck(lambda x: _Cube()(x), x)
    with pytest.raises(GradcheckError, match="gradient of cube"):
        gradgradcheck(lambda x: _Cube()(x), x, name="cube")


def test_unused_inputs_have_zero_gradient(device):
    x, unused = _tensor((2,), device=device), _tensor((2,), seed=1, device=device)
    assert gradcheck(lambda x, unused: x * x, x, unused)
