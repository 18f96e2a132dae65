"""Gradient penalties through a small conv discriminator: values against NumPy computed
from the input gradient, and numeric checks of their gradients in D's weights (which
exercise D's second derivatives)."""
import numpy as np
import pytest

import needle as ndl
from gan.penalties import R1, R2, GradientPenalty, WeightClipping
from needle.gradcheck import gradcheck


def small_critic(W1, W2):
    """x (N, 5, 5, 1) NHWC -> (N,) scores: conv, leaky_relu, conv, sum."""
    def score(x):
        hidden = ndl.leaky_relu(ndl.conv(x, W1, stride=2, padding=1), 0.2)
        out = ndl.conv(ndl.tanh(hidden), W2, stride=1, padding=0)
        return ndl.summation(out, (1, 2, 3))
    return score


def weights(seed=0):
    rng = np.random.default_rng(seed)
    return (ndl.Tensor(rng.standard_normal((3, 3, 1, 2)) * 0.5, dtype="float64"),
            ndl.Tensor(rng.standard_normal((3, 3, 2, 1)) * 0.5, dtype="float64"))


def images(seed):
    return ndl.Tensor(np.random.default_rng(seed).standard_normal((3, 5, 5, 1)),
                      dtype="float64", requires_grad=False)


def input_gradients(score, x):
    """d sum(score(x)) / dx as NumPy, through needle's first-order backward."""
    x = ndl.Tensor(x.numpy(), dtype=x.dtype)
    score(x).sum().backward()
    return x.grad.numpy()


def test_r1_value_is_half_gamma_mean_squared_norm():
    score, real, fake = small_critic(*weights()), images(1), images(2)
    grads = input_gradients(score, real)
    expected = 5.0 * np.mean(np.sum(grads ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(R1(gamma=10.0)(score, real, fake).numpy(), expected, rtol=1e-10)
    grads_fake = input_gradients(score, fake)
    expected_fake = 5.0 * np.mean(np.sum(grads_fake ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(R2(gamma=10.0)(score, real, fake).numpy(), expected_fake,
                               rtol=1e-10)


def test_gradient_penalty_value_at_its_interpolates():
    score, real, fake = small_critic(*weights()), images(1), images(2)
    np.random.seed(7)
    value = GradientPenalty(weight=10.0)(score, real, fake).numpy()
    np.random.seed(7)
    eps = np.random.rand(3, 1, 1, 1)  # the same draw the penalty makes
    x_hat = eps * real.numpy() + (1 - eps) * fake.numpy()
    grads = input_gradients(score, ndl.Tensor(x_hat, dtype="float64"))
    norms = np.sqrt(np.sum(grads ** 2, axis=(1, 2, 3)) + 1e-12)
    np.testing.assert_allclose(value, 10.0 * np.mean((norms - 1) ** 2), rtol=1e-8)


@pytest.mark.parametrize("penalty", [GradientPenalty(10.0), R1(10.0), R2(10.0)], ids=repr)
def test_penalty_gradient_wrt_weights(penalty):
    """gradcheck of the penalty in D's weights = a check of D's double backward.

    Penalties detach their data inputs (D's update never needs d penalty / d data).
    """
    real, fake = images(1), images(2)

    def value(W1, W2):
        np.random.seed(3)  # GradientPenalty draws its interpolation weights
        return penalty(small_critic(W1, W2), real, fake)

    gradcheck(value, *weights())


def test_weight_clipping_clamps_parameters():
    p = ndl.nn.Parameter(ndl.Tensor(np.array([-1.0, -0.005, 0.5], dtype=np.float32)))
    WeightClipping(0.01).apply([p])
    np.testing.assert_array_equal(p.numpy(), np.array([-0.01, -0.005, 0.01], np.float32))
    assert p.dtype == "float32"
    with pytest.raises(ValueError, match="clip_value"):
        WeightClipping(0)
