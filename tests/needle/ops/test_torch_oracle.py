"""A second, independent oracle: composite expressions vs PyTorch in float64.

The spec table checks ops one at a time against NumPy; here whole expressions (an MLP head,
GAN losses, attention, a layer norm, a gradient penalty) must agree with torch in value, first
and second derivatives. Skipped where torch is not installed.
"""
import numpy as np
import pytest

import needle as ndl

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _mlp(nd, x, w, b):
    return nd.logsoftmax(nd.tanh(x @ w + nd.broadcast_to(b, (x.shape[0], w.shape[1]))))


def _mlp_torch(x, w, b):
    return F.log_softmax(torch.tanh(x @ w + b), dim=1)


def _gan_losses(nd, real, fake):
    d_loss = nd.mean(nd.softplus(-real)) + nd.mean(nd.softplus(fake))
    g_loss = -nd.mean(nd.log_sigmoid(fake))
    return nd.stack([d_loss, g_loss], 0)


def _gan_losses_torch(real, fake):
    d_loss = F.softplus(-real).mean() + F.softplus(fake).mean()
    return torch.stack([d_loss, -F.logsigmoid(fake).mean()])


def _attention(nd, q, k, v):
    scores = (q @ nd.transpose(k)) / 2.0
    shift = nd.broadcast_to(nd.reshape(nd.logsumexp(scores, axes=2), scores.shape[:2] + (1,)),
                            scores.shape)
    return nd.exp(scores - shift) @ v


def _attention_torch(q, k, v):
    return torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v


def _layer_norm(nd, x):
    n = x.shape[1]
    centred = x - nd.broadcast_to(nd.reshape(nd.mean(x, axes=1), (x.shape[0], 1)), x.shape)
    variance = nd.summation(centred * centred, axes=1) / n
    scale = nd.power_scalar(nd.reshape(variance, (x.shape[0], 1)) + 1e-5, -0.5)
    return centred * nd.broadcast_to(scale, x.shape)


def _layer_norm_torch(x):
    return F.layer_norm(x, x.shape[1:], eps=1e-5)


def _elementwise_mix(nd, a, b):
    return (nd.power(a, b) * nd.sigmoid(b) + nd.log_sigmoid(a)
            - nd.leaky_relu(b, 0.1) / (nd.abs(b) + 1.0) + nd.clip(a, 0.2, 1.5)
            + nd.maximum(a, b) - nd.minimum(a, b) * nd.sqrt(a) + 2.0 / (1.0 + nd.exp(-b)))


def _elementwise_mix_torch(a, b):
    return (a ** b * torch.sigmoid(b) + F.logsigmoid(a)
            - F.leaky_relu(b, 0.1) / (b.abs() + 1.0) + a.clamp(0.2, 1.5)
            + torch.maximum(a, b) - torch.minimum(a, b) * a.sqrt() + 2.0 / (1.0 + (-b).exp()))


def _shape_mix(nd, x):
    y = nd.flip(nd.permute(x, (2, 0, 1)), (0,))
    y = nd.reshape(y, (4, 6)) * nd.broadcast_to(nd.summation(x, axes=(0, 1)), (6, 4)).transpose()
    dilated = nd.dilate(y, axes=(1,), dilation=1)
    return nd.relu(dilated) + nd.broadcast_to(nd.logsumexp(y, axes=0).sum(), dilated.shape)


def _shape_mix_torch(x):
    y = torch.flip(x.permute(2, 0, 1), (0,)).reshape(4, 6) * x.sum((0, 1)).reshape(4, 1)
    dilated = torch.zeros(4, 12, dtype=x.dtype)
    dilated[:, ::2] = y
    return torch.relu(dilated) + torch.logsumexp(y, 0).sum()


EXPRESSIONS = {
    "mlp_logsoftmax": (_mlp, _mlp_torch, [(4, 5), (5, 3), (1, 3)]),
    "gan_losses": (_gan_losses, _gan_losses_torch, [(6, 1), (6, 1)]),
    "batched_attention": (_attention, _attention_torch, [(2, 3, 4)] * 3),
    "layer_norm": (_layer_norm, _layer_norm_torch, [(5, 4)]),
    "elementwise_mix": (_elementwise_mix, _elementwise_mix_torch, [(3, 4), (3, 4)]),
    "shape_mix": (_shape_mix, _shape_mix_torch, [(2, 3, 4)]),
}


def _inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    # positive first input keeps power/log/sqrt real; the rest are signed
    return [rng.uniform(0.3, 2.0, shapes[0])] + [rng.standard_normal(s) for s in shapes[1:]]


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_value_and_gradients_match_torch(name, device):
    needle_fn, torch_fn, shapes = EXPRESSIONS[name]
    arrays = _inputs(shapes, seed=len(name))
    tensors = [ndl.Tensor(a, device=device, dtype="float64") for a in arrays]
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = needle_fn(ndl, *tensors), torch_fn(*leaves)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-10, atol=1e-12)

    weights = np.random.default_rng(1).standard_normal(expected.shape)
    seed = ndl.Tensor(weights, device=device, dtype="float64")
    grads = ndl.grad(out, tensors, grad_outputs=seed)
    expected_grads = torch.autograd.grad(expected, leaves, torch.tensor(weights))
    for grad, reference in zip(grads, expected_grads):
        np.testing.assert_allclose(grad.numpy(), reference.numpy(), rtol=1e-9, atol=1e-12)


def test_gradient_penalty_second_derivatives_match_torch(device):
    """WGAN-GP's shape: the gradient's norm is itself differentiated w.r.t. the weights."""
    rng = np.random.default_rng(7)
    x, w1, w2 = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), \
        rng.standard_normal((4, 1))

    tensors = [ndl.Tensor(a, device=device, dtype="float64") for a in (x, w1, w2)]
    critic = ndl.sigmoid(ndl.tanh(tensors[0] @ tensors[1]) @ tensors[2])
    gx = ndl.grad(critic.sum(), tensors[0], create_graph=True)
    norms = ndl.sqrt(ndl.summation(gx * gx, axes=1) + 1e-12)
    value = ndl.mean((norms - 1.0) ** 2)
    needle_grads = ndl.grad(value, tensors[1:])

    leaves = [torch.tensor(a, requires_grad=True) for a in (x, w1, w2)]
    critic = torch.sigmoid(torch.tanh(leaves[0] @ leaves[1]) @ leaves[2])
    (gx,) = torch.autograd.grad(critic.sum(), leaves[0], create_graph=True)
    expected = ((torch.sqrt((gx * gx).sum(1) + 1e-12) - 1.0) ** 2).mean()
    torch_grads = torch.autograd.grad(expected, leaves[1:])

    np.testing.assert_allclose(value.numpy(), expected.detach().numpy(), rtol=1e-12)
    for grad, reference in zip(needle_grads, torch_grads):
        np.testing.assert_allclose(grad.numpy(), reference.numpy(), rtol=1e-9, atol=1e-12)
