"""ndl.grad differentiates only the nodes on a path from its inputs to its outputs.

A gradient penalty asks for d D(x) / dx; D's weight gradients are not on that path, so the
walk must not compute them (they would be dropped). Checked by counting the weight-gradient
kernels that run, and the results against an unpruned walk (backward(), which fills every
.grad) and against PyTorch.
"""
import importlib

import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle.ops.matmul import MatMul

conv_ops = importlib.import_module("needle.ops.conv")  # the module; ops.conv is the function


class _Counter:
    def __init__(self, monkeypatch, cls):
        self.calls = 0
        original = cls.compute

        def counted(op, *arrays):
            self.calls += 1
            return original(op, *arrays)

        monkeypatch.setattr(cls, "compute", counted)


class _WeightGradCounter:
    """Counts conv weight gradients, however computed: the ConvWeightGrad op and conv's
    reuse of its forward gather both go through conv's _weight_grad_from_cols."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = conv_ops._weight_grad_from_cols

        def counted(*args):
            self.calls += 1
            return original(*args)

        monkeypatch.setattr(conv_ops, "_weight_grad_from_cols", counted)


def _critic(device):
    np.random.seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1, device=device),
                         nn.LeakyReLU(0.2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 1, device=device))


def test_penalty_gradient_computes_no_weight_gradients(device, monkeypatch):
    critic = _critic(device)
    x = ndl.Tensor(np.random.randn(3, 1, 8, 8), device=device)
    weight_grads = _WeightGradCounter(monkeypatch)
    (gx,) = ndl.grad([critic(x).sum()], [x], create_graph=True)
    assert weight_grads.calls == 0
    # the unpruned walk (backward fills every .grad) gives the same input gradient
    x_full = ndl.Tensor(x.numpy(), device=device)
    critic(x_full).sum().backward(create_graph=False)
    assert weight_grads.calls == 1
    np.testing.assert_allclose(gx.numpy(), x_full.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_pruned_walk_skips_matmuls_off_the_path(monkeypatch):
    w = ndl.Tensor(np.random.randn(4, 3))
    x = ndl.Tensor(np.random.randn(2, 4))
    out = ndl.matmul(x, w).sum()
    products = _Counter(monkeypatch, MatMul)
    (gx,) = ndl.grad([out], [x])
    assert products.calls == 1  # out_grad @ w^T only; x^T @ out_grad is not needed
    np.testing.assert_allclose(gx.numpy(), np.ones((2, 3), np.float32) @ w.numpy().T,
                               rtol=1e-6)


def test_penalty_still_reaches_the_weights_through_double_backward(device):
    """Pruning the first walk must not cut the graph the penalty's backward needs."""
    torch = pytest.importorskip("torch")
    critic = _critic(device)
    x_np = np.random.randn(3, 1, 8, 8).astype(np.float32)
    x = ndl.Tensor(x_np, device=device)
    (gx,) = ndl.grad([critic(x).sum()], [x], create_graph=True)
    penalty = ndl.summation(gx * gx)
    conv, linear = critic.modules[0], critic.modules[3]
    grads = ndl.grad([penalty], [conv.weight, linear.weight])

    t_conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
    t_linear = torch.nn.Linear(16 * 4, 1)
    with torch.no_grad():
        t_conv.weight.copy_(torch.from_numpy(conv.weight.numpy().transpose(3, 2, 0, 1).copy()))
        t_conv.bias.copy_(torch.from_numpy(conv.bias.numpy().reshape(-1)))
        t_linear.weight.copy_(torch.from_numpy(linear.weight.numpy().T.copy()))
        t_linear.bias.copy_(torch.from_numpy(linear.bias.numpy().reshape(-1)))
    tx = torch.from_numpy(x_np).requires_grad_(True)
    hidden = torch.nn.functional.leaky_relu(t_conv(tx), 0.2).flatten(1)
    (tgx,) = torch.autograd.grad(t_linear(hidden).sum(), tx, create_graph=True)
    t_grads = torch.autograd.grad((tgx * tgx).sum(), [t_conv.weight, t_linear.weight])
    np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[0].numpy().transpose(3, 2, 0, 1), t_grads[0].numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[1].numpy().T, t_grads[1].numpy(), rtol=1e-4, atol=1e-5)


def test_backward_is_not_pruned():
    a, b = ndl.Tensor([1.0, 2.0]), ndl.Tensor([3.0, 4.0])
    (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 2.0])


def test_backward_with_inputs_computes_and_stores_their_gradients_alone(device, monkeypatch):
    """A G step's backward(inputs=G's params) through D: no conv weight gradient of D runs,
    D's .grad stays what it was, and G's gradients equal those of a full backward() and
    PyTorch's backward(inputs=...)."""
    torch = pytest.importorskip("torch")
    np.random.seed(1)
    generator = nn.Linear(5, 64, device=device)
    critic = _critic(device)
    z_np = np.random.randn(3, 5).astype(np.float32)

    def g_loss():
        fake = ndl.reshape(generator(ndl.Tensor(z_np, device=device)), (3, 1, 8, 8))
        return critic(fake).sum()

    conv = critic.modules[0]
    marker = ndl.Tensor(np.full(conv.weight.shape, 7.0, np.float32), device=device)
    conv.weight.grad = marker
    weight_grads = _WeightGradCounter(monkeypatch)
    g_loss().backward(create_graph=False, inputs=generator.parameters())
    assert weight_grads.calls == 0 and conv.weight.grad is marker
    pruned = [p.grad.numpy() for p in generator.parameters()]
    g_loss().backward(create_graph=False)
    assert weight_grads.calls == 1
    for got, full in zip(pruned, (p.grad.numpy() for p in generator.parameters())):
        np.testing.assert_array_equal(got, full)

    t_gen = torch.nn.Linear(5, 64)
    t_conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
    t_linear = torch.nn.Linear(16 * 4, 1)
    linear = critic.modules[3]
    with torch.no_grad():
        t_gen.weight.copy_(torch.from_numpy(generator.weight.numpy().T.copy()))
        t_gen.bias.copy_(torch.from_numpy(generator.bias.numpy().reshape(-1)))
        t_conv.weight.copy_(torch.from_numpy(conv.weight.numpy().transpose(3, 2, 0, 1).copy()))
        t_conv.bias.copy_(torch.from_numpy(conv.bias.numpy().reshape(-1)))
        t_linear.weight.copy_(torch.from_numpy(linear.weight.numpy().T.copy()))
        t_linear.bias.copy_(torch.from_numpy(linear.bias.numpy().reshape(-1)))
    fake = t_gen(torch.from_numpy(z_np)).view(3, 1, 8, 8)
    hidden = torch.nn.functional.leaky_relu(t_conv(fake), 0.2).flatten(1)
    t_linear(hidden).sum().backward(
        inputs=[t_gen.weight, t_gen.bias])
    assert t_conv.weight.grad is None
    np.testing.assert_allclose(pruned[0].T, t_gen.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pruned[1].reshape(-1), t_gen.bias.grad.numpy(), rtol=1e-4,
                               atol=1e-5)


def test_backward_with_bad_inputs_names_them():
    a = ndl.Tensor([1.0, 2.0])
    constant = ndl.Tensor([3.0, 4.0], requires_grad=False)
    loss = (a * constant).sum()
    with pytest.raises(ValueError, match="inputs is empty"):
        loss.backward(inputs=[])
    with pytest.raises(ValueError, match=r"inputs\[1\] is not a Tensor that requires grad"):
        loss.backward(inputs=[a, constant])
    with pytest.raises(ValueError, match=r"inputs\[0\] is not a Tensor that requires grad "
                                         r"\(ndarray\)"):
        loss.backward(inputs=[np.ones(2)])
    loss.backward(inputs=a)  # one Tensor, as in torch
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])
