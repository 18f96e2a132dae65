"""Losses against NumPy formulas written here (and torch where it is installed)."""
import numpy as np
import pytest

import needle as ndl
from needle import nn


def _tensor(array, device):
    return ndl.Tensor(array, device=device, dtype="float64")


def test_softmax_loss_matches_numpy(device):
    logits, labels = np.random.randn(6, 5) * 4, np.array([0, 4, 2, 2, 1, 3])
    logits_t = _tensor(logits, device)
    loss = nn.SoftmaxLoss()(logits_t, ndl.Tensor(labels, device=device))
    top = logits.max(axis=1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    assert loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), -log_probs[np.arange(6), labels].mean(),
                               rtol=1e-12)
    loss.backward()
    expected = np.exp(log_probs)
    expected[np.arange(6), labels] -= 1
    np.testing.assert_allclose(logits_t.grad.numpy(), expected / 6, rtol=1e-10, atol=1e-14)


def test_softmax_loss_accepts_float_labels_and_huge_logits(device):
    logits = np.array([[1e5, 0.0, -1e5], [0.0, 2e5, 0.0]])
    loss = nn.SoftmaxLoss()(_tensor(logits, device), _tensor([0.0, 2.0], device))
    np.testing.assert_allclose(loss.numpy(), (0.0 + 2e5) / 2)


def _bce_numpy(x, y):
    """-[y log s + (1 - y) log(1 - s)], s = sigmoid(x), in a form that is stable in NumPy."""
    return np.mean(np.logaddexp(0, x) - y * x)


def test_bce_with_logits_matches_numpy_and_torch(device):
    x, y = np.random.randn(4, 3) * 3, np.random.rand(4, 3)
    xt = _tensor(x, device)
    loss = nn.BCEWithLogitsLoss()(xt, _tensor(y, device))
    assert loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), _bce_numpy(x, y), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(xt.grad.numpy(), (1 / (1 + np.exp(-x)) - y) / 12, rtol=1e-10)
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(x),
                                                                    torch.tensor(y))
    np.testing.assert_allclose(loss.numpy(), expected.item(), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_is_exact_at_huge_logits(dtype, device):
    x = ndl.Tensor(np.array([1000.0, 1000.0, -1000.0, -1000.0], dtype=dtype), device=device)
    y = ndl.Tensor(np.array([1.0, 0.0, 1.0, 0.0], dtype=dtype), device=device)
    loss = nn.BCEWithLogitsLoss()(x, y)
    np.testing.assert_allclose(loss.numpy(), (0 + 1000 + 1000 + 0) / 4)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), np.array([0.0, 1.0, -1.0, 0.0]) / 4)


def test_bce_with_logits_first_and_second_derivatives():
    x = ndl.Tensor(np.random.randn(3, 4) * 2, dtype="float64")
    y = ndl.Tensor(np.random.rand(3, 4), dtype="float64")
    ndl.gradcheck(nn.BCEWithLogitsLoss(), x, y)
    ndl.gradgradcheck(nn.BCEWithLogitsLoss(), x, y)


def test_mse_and_l1_match_numpy(device):
    a, b = np.random.randn(3, 2, 4), np.random.randn(3, 2, 4)
    at = _tensor(a, device)
    mse = nn.MSELoss()(at, _tensor(b, device))
    np.testing.assert_allclose(mse.numpy(), np.mean((a - b) ** 2), rtol=1e-12)
    mse.backward()
    np.testing.assert_allclose(at.grad.numpy(), 2 * (a - b) / a.size, rtol=1e-12)
    at = _tensor(a, device)
    l1 = nn.L1Loss()(at, _tensor(b, device))
    np.testing.assert_allclose(l1.numpy(), np.mean(np.abs(a - b)), rtol=1e-12)
    l1.backward()
    np.testing.assert_allclose(at.grad.numpy(), np.sign(a - b) / a.size, rtol=1e-12)
    assert mse.shape == l1.shape == ()


@pytest.mark.parametrize("loss", [nn.BCEWithLogitsLoss(), nn.MSELoss(), nn.L1Loss()],
                         ids=["bce", "mse", "l1"])
def test_losses_name_a_shape_mismatch(loss):
    name = type(loss).__name__
    with pytest.raises(ValueError, match=rf"{name}: prediction shape \(2, 3\) and target "
                                         r"shape \(3, 2\) differ"):
        loss(ndl.Tensor(np.zeros((2, 3))), ndl.Tensor(np.zeros((3, 2))))
