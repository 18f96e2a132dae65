"""Normalisation layers against a NumPy formula, against torch (float64), and by gradcheck."""
import numpy as np
import pytest

import needle as ndl
from needle import nn

EPS = 1e-5


def _tensor(array, device):
    return ndl.Tensor(array, device=device, dtype="float64")


def _normalized(x, axes):
    """(x - mean) / sqrt(var + eps) with the biased variance, in NumPy."""
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS)


def _along(vector, axis, ndim):
    return vector.reshape([-1 if i == axis else 1 for i in range(ndim)])


def _set_affine(layer, weight, bias, device):
    layer.weight.data = _tensor(weight, device)
    layer.bias.data = _tensor(bias, device)


def _forward_backward(layer, x, out_grad, device):
    """Output, input gradient and (weight, bias) gradients as NumPy arrays."""
    xt = _tensor(x, device)
    y = layer(xt)
    (y * _tensor(out_grad, device)).sum().backward()
    grads = [p.grad.numpy() for p in layer.parameters()]
    return y.numpy(), xt.grad.numpy(), grads


def _torch_forward_backward(layer, x, out_grad):
    import torch
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    (y * torch.tensor(out_grad)).sum().backward()
    grads = [p.grad.numpy() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad = None
    return y.detach().numpy(), xt.grad.numpy(), grads


def _assert_all_close(ours, theirs):
    y, gx, gparams = ours
    ty, tgx, tgparams = theirs
    np.testing.assert_allclose(y, ty, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(gx, tgx, rtol=1e-8, atol=1e-10)
    assert len(gparams) == len(tgparams)
    for g, tg in zip(gparams, tgparams):
        np.testing.assert_allclose(g, tg, rtol=1e-8, atol=1e-10)


# ---- batch norm --------------------------------------------------------------------------
BATCH_NORMS = [(nn.BatchNorm1d, "BatchNorm1d", (8, 3)), (nn.BatchNorm1d, "BatchNorm1d", (6, 3, 5)),
               (nn.BatchNorm2d, "BatchNorm2d", (4, 3, 5, 6))]


@pytest.mark.parametrize("layer_class, torch_name, shape", BATCH_NORMS,
                         ids=["1d", "1d-NCL", "2d"])
def test_batch_norm_matches_torch_over_several_steps(layer_class, torch_name, shape, device):
    torch = pytest.importorskip("torch")
    channels, axes = shape[1], tuple(i for i in range(len(shape)) if i != 1)
    layer = layer_class(channels, momentum=0.2, device=device, dtype="float64")
    reference = getattr(torch.nn, torch_name)(channels, eps=EPS, momentum=0.2,
                                              dtype=torch.float64)
    weight, bias = np.random.randn(channels), np.random.randn(channels)
    _set_affine(layer, weight, bias, device)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(weight))
        reference.bias.copy_(torch.tensor(bias))
    running_var = np.ones(channels)
    for step in range(3):
        x, out_grad = np.random.randn(*shape) * 2 + step, np.random.randn(*shape)
        _assert_all_close(_forward_backward(layer, x, out_grad, device),
                          _torch_forward_backward(reference, x, out_grad))
        running_var = 0.8 * running_var + 0.2 * x.var(axis=axes)  # biased, unlike torch
    np.testing.assert_allclose(layer.running_mean.numpy(), reference.running_mean.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(layer.running_var.numpy(), running_var, rtol=1e-12)

    layer.eval(), reference.eval()
    with torch.no_grad():
        reference.running_var.copy_(torch.tensor(running_var))
    x, out_grad = np.random.randn(*shape), np.random.randn(*shape)
    _assert_all_close(_forward_backward(layer, x, out_grad, device),
                      _torch_forward_backward(reference, x, out_grad))


@pytest.mark.parametrize("layer_class, _, shape", BATCH_NORMS, ids=["1d", "1d-NCL", "2d"])
def test_batch_norm_matches_the_numpy_formula(layer_class, _, shape, device):
    channels, axes = shape[1], tuple(i for i in range(len(shape)) if i != 1)
    layer = layer_class(channels, device=device, dtype="float64")
    weight, bias = np.random.randn(channels), np.random.randn(channels)
    _set_affine(layer, weight, bias, device)
    x = np.random.randn(*shape) + 1.5
    w, b = _along(weight, 1, len(shape)), _along(bias, 1, len(shape))
    np.testing.assert_allclose(layer(_tensor(x, device)).numpy(),
                               _normalized(x, axes) * w + b, rtol=1e-10, atol=1e-12)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    np.testing.assert_allclose(layer.running_mean.numpy(), 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var.numpy(), 0.9 + 0.1 * var, rtol=1e-12)
    layer.eval()
    expected = (x - _along(0.1 * mean, 1, len(shape))) / np.sqrt(
        _along(0.9 + 0.1 * var, 1, len(shape)) + EPS) * w + b
    np.testing.assert_allclose(layer(_tensor(x, device)).numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (np.float64(0.1), np.float64(1e-5))])
def test_batch_norm_buffers_are_tensors_without_graph(momentum, eps):
    """NumPy float64 hyperparameters must not promote the float32 output or buffers."""
    layer = nn.BatchNorm2d(3, eps=eps, momentum=momentum)
    assert len(layer.parameters()) == 2
    assert layer.weight.shape == (3,) and layer.bias.shape == (3,)
    x = ndl.Tensor(np.random.randn(2, 3, 4, 4).astype("float32"))
    out = layer(x)
    assert out.dtype == "float32"
    out.sum().backward()
    for buffer in (layer.running_mean, layer.running_var):
        assert not isinstance(buffer, nn.Parameter)
        assert buffer.op is None and not buffer.requires_grad
        assert getattr(buffer, "grad", None) is None
        assert str(buffer.dtype) == "float32"


def test_norm_layers_create_parameters_on_device(device):
    for layer in (nn.BatchNorm1d(4, device=device), nn.BatchNorm2d(4, device=device),
                  nn.LayerNorm1d(4, device=device),
                  nn.InstanceNorm2d(4, affine=True, device=device)):
        for name, value in layer.state_dict().items():
            tensor = getattr(layer, name)
            assert tensor.device == device and str(tensor.dtype) == "float32", name


@pytest.mark.parametrize("layer, shape, message", [
    (nn.BatchNorm2d(3), (4, 3), r"BatchNorm2d: expected input \(N, C, H, W\) with 3 "
                                r"features on axis 1, got shape \(4, 3\)"),
    (nn.BatchNorm1d(3), (4, 2), r"BatchNorm1d: expected input \(N, C\) or \(N, C, L\)"),
    (nn.LayerNorm1d(5), (2, 4), r"LayerNorm1d: expected input \(..., dim\) with 5"),
    (nn.InstanceNorm2d(3), (1, 2, 4, 4), r"InstanceNorm2d: expected input"),
], ids=["bn2d", "bn1d", "ln", "in"])
def test_norm_layers_name_a_wrong_input_shape(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(ndl.Tensor(np.zeros(shape, dtype="float32")))


# ---- layer norm and instance norm --------------------------------------------------------
def test_layer_norm_matches_torch_and_numpy_on_nd_input(device):
    torch = pytest.importorskip("torch")
    layer = nn.LayerNorm1d(6, device=device, dtype="float64")
    weight, bias = np.random.randn(6), np.random.randn(6)
    _set_affine(layer, weight, bias, device)
    x, out_grad = np.random.randn(2, 3, 6) * 3 + 1, np.random.randn(2, 3, 6)
    reference = torch.nn.LayerNorm(6, eps=EPS, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(weight))
        reference.bias.copy_(torch.tensor(bias))
    ours = _forward_backward(layer, x, out_grad, device)
    _assert_all_close(ours, _torch_forward_backward(reference, x, out_grad))
    np.testing.assert_allclose(ours[0], _normalized(x, (2,)) * weight + bias, rtol=1e-10)


@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_matches_torch_and_numpy(affine, device):
    torch = pytest.importorskip("torch")
    layer = nn.InstanceNorm2d(3, affine=affine, device=device, dtype="float64")
    reference = torch.nn.InstanceNorm2d(3, eps=EPS, affine=affine, dtype=torch.float64)
    weight, bias = np.ones(3), np.zeros(3)
    if affine:
        weight, bias = np.random.randn(3), np.random.randn(3)
        _set_affine(layer, weight, bias, device)
        with torch.no_grad():
            reference.weight.copy_(torch.tensor(weight))
            reference.bias.copy_(torch.tensor(bias))
    assert len(layer.parameters()) == (2 if affine else 0)
    for mode in ("train", "eval"):
        getattr(layer, mode)(), getattr(reference, mode)()
        x, out_grad = np.random.randn(2, 3, 5, 4) + 2, np.random.randn(2, 3, 5, 4)
        ours = _forward_backward(layer, x, out_grad, device)
        _assert_all_close(ours, _torch_forward_backward(reference, x, out_grad))
        expected = _normalized(x, (2, 3)) * _along(weight, 1, 4) + _along(bias, 1, 4)
        np.testing.assert_allclose(ours[0], expected, rtol=1e-10, atol=1e-12)


# ---- first and second derivatives --------------------------------------------------------
def _with_affine(layer):
    def apply(x, weight, bias):
        layer.weight, layer.bias = weight, bias
        return layer(x)
    return apply


@pytest.mark.parametrize("make_layer, shape", [
    (lambda: nn.LayerNorm1d(4, dtype="float64"), (2, 3, 4)),
    (lambda: nn.BatchNorm2d(2, dtype="float64"), (3, 2, 2, 3)),
    (lambda: nn.BatchNorm2d(2, dtype="float64").eval(), (3, 2, 2, 3)),
    (lambda: nn.BatchNorm1d(3, dtype="float64"), (5, 3)),
    (lambda: nn.InstanceNorm2d(2, affine=True, dtype="float64"), (2, 2, 3, 3)),
], ids=["layer_norm", "batch_norm_2d", "batch_norm_2d_eval", "batch_norm_1d",
        "instance_norm"])
def test_norm_gradients_and_second_derivatives(make_layer, shape):
    layer = make_layer()
    channels = layer.weight.shape[0]
    inputs = [ndl.Tensor(np.random.randn(*s), dtype="float64")
              for s in (shape, (channels,), (channels,))]
    ndl.gradcheck(_with_affine(layer), *inputs)
    ndl.gradgradcheck(_with_affine(layer), *inputs)


def test_instance_norm_without_affine_second_derivative():
    ndl.gradgradcheck(nn.InstanceNorm2d(2, dtype="float64"),
                      ndl.Tensor(np.random.randn(2, 2, 3, 3), dtype="float64"))
