"""Basic layers against NumPy: Linear (course init), activations, containers, Dropout,
Embedding."""
import numpy as np
import pytest

import needle as ndl
from needle import nn


def _tensor(array, device, dtype="float64"):
    return ndl.Tensor(array, device=device, dtype=dtype)


def _uniform(rng_draw, bound):
    """The course's kaiming_uniform in float32: rand * (high - low) + low."""
    return rng_draw.astype("float32") * np.float32(2 * bound) + np.float32(-bound)


def test_linear_init_matches_the_course_draw_order():
    np.random.seed(1337)
    layer = nn.Linear(7, 4)
    np.random.seed(1337)
    weight = _uniform(np.random.rand(7, 4), np.sqrt(6 / 7))
    bias = _uniform(np.random.rand(4, 1), np.sqrt(6 / 4)).reshape(1, 4)
    assert layer.weight.shape == (7, 4) and layer.bias.shape == (1, 4)
    assert str(layer.weight.dtype) == "float32"
    np.testing.assert_allclose(layer.weight.numpy(), weight, rtol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), bias, rtol=1e-6)
    assert [p is q for p, q in zip(layer.parameters(), (layer.weight, layer.bias))] == [True] * 2


def test_linear_creates_parameters_on_device_and_dtype(device):
    layer = nn.Linear(3, 2, bias=False, device=device, dtype="float64")
    assert layer.bias is None and len(layer.parameters()) == 1
    assert layer.weight.device == device and str(layer.weight.dtype) == "float64"


def test_linear_forward_and_backward_on_nd_input(device):
    layer = nn.Linear(5, 3, device=device, dtype="float64")
    x = np.random.randn(2, 4, 5)
    W, b = layer.weight.numpy(), layer.bias.numpy()
    xt = _tensor(x, device)
    y = layer(xt)
    assert y.shape == (2, 4, 3)
    np.testing.assert_allclose(y.numpy(), x @ W + b, rtol=1e-12)
    out_grad = np.random.randn(2, 4, 3)
    (y * _tensor(out_grad, device)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), out_grad @ W.T, rtol=1e-10)
    np.testing.assert_allclose(layer.weight.grad.numpy(),
                               x.reshape(-1, 5).T @ out_grad.reshape(-1, 3), rtol=1e-10)
    np.testing.assert_allclose(layer.bias.grad.numpy(), out_grad.sum((0, 1))[None], rtol=1e-10)


def test_linear_reads_a_replaced_one_dimensional_bias(device):
    layer = nn.Linear(4, 3, device=device, dtype="float64")
    layer.bias = _tensor([1.0, 2.0, 3.0], device)
    x = np.random.randn(6, 4)
    y = layer(_tensor(x, device))
    np.testing.assert_allclose(y.numpy(), x @ layer.weight.numpy() + [1.0, 2.0, 3.0])
    y.sum().backward()
    np.testing.assert_allclose(layer.bias.grad.numpy(), [6.0, 6.0, 6.0])


def test_linear_names_a_wrong_input_width():
    with pytest.raises(ValueError, match=r"Linear: expected input with last axis 4, got "
                                         r"shape \(2, 3\)"):
        nn.Linear(4, 2)(ndl.Tensor(np.zeros((2, 3), dtype="float32")))


def test_flatten_keeps_the_batch_axis(device):
    x = np.random.randn(2, 3, 4, 5)
    np.testing.assert_array_equal(nn.Flatten()(_tensor(x, device)).numpy(), x.reshape(2, 60))


@pytest.mark.parametrize("layer, reference", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(), lambda x: np.where(x > 0, x, 0.01 * x)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Identity(), lambda x: x),
], ids=["relu", "leaky_relu", "leaky_relu_0.2", "tanh", "sigmoid", "identity"])
def test_activations_match_numpy(layer, reference, device):
    x = np.random.randn(3, 5) * 3
    np.testing.assert_allclose(layer(_tensor(x, device)).numpy(), reference(x), rtol=1e-12)


def test_sequential_and_residual_compose_in_order(device):
    np.random.seed(0)
    first = nn.Linear(4, 4, device=device, dtype="float64")
    second = nn.Linear(4, 4, device=device, dtype="float64")
    model = nn.Sequential(nn.Residual(nn.Sequential(first, nn.ReLU())), second)
    assert model.modules[1] is second
    x = np.random.randn(3, 4)
    hidden = np.maximum(x @ first.weight.numpy() + first.bias.numpy(), 0) + x
    expected = hidden @ second.weight.numpy() + second.bias.numpy()
    np.testing.assert_allclose(model(_tensor(x, device)).numpy(), expected, rtol=1e-12)
    assert len(model.parameters()) == 4


def test_dropout_keeps_where_rand_is_at_most_one_minus_p(device):
    x = np.random.randn(20, 30) + 3
    np.random.seed(3)
    y = nn.Dropout(0.4)(_tensor(x, device)).numpy()
    np.random.seed(3)
    mask = np.random.rand(20, 30) <= 0.6
    np.testing.assert_allclose(y, x * mask / 0.6, rtol=1e-12)
    assert 0 < mask.mean() < 1


def test_dropout_gradient_uses_the_same_mask(device):
    xt = _tensor(np.ones((4, 5)), device)
    y = nn.Dropout(0.5)(xt)
    y.sum().backward()
    np.testing.assert_array_equal(xt.grad.numpy(), y.numpy())


def test_dropout_is_identity_in_eval_and_draws_nothing(device):
    layer = nn.Dropout(0.9).eval()
    xt = _tensor(np.random.randn(3, 3), device)
    state = np.random.get_state()[1].copy()
    assert layer(xt) is xt
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_dropout_rejects_p_outside_zero_to_one():
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\), got 1"):
        nn.Dropout(1)


def test_embedding_looks_up_rows_and_accumulates_gradients(device):
    np.random.seed(5)
    layer = nn.Embedding(10, 4, device=device, dtype="float64")
    np.random.seed(5)
    np.testing.assert_allclose(layer.weight.numpy(), np.random.randn(10, 4), rtol=1e-12)
    ids = np.array([[1, 2, 1], [9, 0, 1]], dtype="float32")
    y = layer(ndl.Tensor(ids, device=device))
    assert y.shape == (2, 3, 4)
    np.testing.assert_array_equal(y.numpy(), layer.weight.numpy()[ids.astype(int)])
    y.sum().backward()
    expected = np.zeros((10, 4))
    np.add.at(expected, ids.astype(int).ravel(), 1.0)
    np.testing.assert_array_equal(layer.weight.grad.numpy(), expected)
