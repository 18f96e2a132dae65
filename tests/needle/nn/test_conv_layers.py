"""Conv layers against PyTorch, the named channel error, weights that load into PyTorch,
and a real training signal from a tiny conv net on MNIST."""
import math
import os

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import needle as ndl
from needle import nn, ops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def to_torch_conv_weight(w):
    """needle (K, K, Cin, Cout) conv or (K, K, Cout, Cin) transposed-conv weight -> torch."""
    return w.transpose(3, 2, 0, 1).copy()


@pytest.mark.parametrize("layer_kind", ["Conv", "Conv2d", "ConvTranspose2d"])
def test_conv_layers_match_torch(layer_kind, device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    if layer_kind == "Conv":
        layer = nn.Conv(3, 5, 3, stride=2, device=device)
        reference = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)
    elif layer_kind == "Conv2d":
        layer = nn.Conv2d(3, 5, 4, stride=2, padding=1, dilation=1, device=device)
        reference = torch.nn.Conv2d(3, 5, 4, stride=2, padding=1)
    else:
        layer = nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1, output_padding=1,
                                   device=device)
        reference = torch.nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(to_torch_conv_weight(layer.weight.numpy())))
        reference.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    X = ndl.Tensor(x, device=device)
    out = layer(X)
    t_x = torch.from_numpy(x).requires_grad_(True)
    t_out = reference(t_x)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-4, atol=1e-5)
    out.sum().backward()
    t_out.sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), t_x.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_torch_conv_weight(layer.weight.grad.numpy()),
                               reference.weight.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(layer.bias.grad.numpy(), reference.bias.grad.numpy(),
                               rtol=1e-4, atol=1e-3)


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def int_or_pair(values):
    return st.one_of(values, st.tuples(values, values))


@st.composite
def layer_cases(draw, transposed=False):
    """(layer keyword arguments, input shape (N, Cin, H, W), Cout) for Conv2d or, with
    `transposed`, ConvTranspose2d: kernel_size, stride, padding, dilation (and
    output_padding) each an int or an (h, w) pair, the output at least 1x1."""
    kwargs = {"kernel_size": draw(int_or_pair(st.integers(1, 4))),
              "stride": draw(int_or_pair(st.integers(1, 3))),
              "padding": draw(int_or_pair(st.integers(0, 2))),
              "dilation": draw(int_or_pair(st.integers(1, 2)))}
    geometry = list(zip(pair(kwargs["kernel_size"]), pair(kwargs["stride"]),
                        pair(kwargs["padding"]), pair(kwargs["dilation"])))
    if transposed:
        strides = pair(kwargs["stride"])
        kwargs["output_padding"] = draw(st.tuples(*(st.integers(0, s - 1) for s in strides)))
        sizes = tuple(draw(st.integers(1, 6)) for _ in range(2))
        out = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, (k, s, p, d), op in
               zip(sizes, geometry, kwargs["output_padding"])]
    else:
        sizes = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 8))
                      for k, s, p, d in geometry)
        out = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, (k, s, p, d) in zip(sizes, geometry)]
    assume(min(out) >= 1)
    return kwargs, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *sizes), \
        draw(st.integers(1, 3))


def check_against_torch(torch, layer, reference, x, device):
    """Forward and input, weight and bias gradients of a float64 layer against PyTorch."""
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(to_torch_conv_weight(layer.weight.numpy())))
        reference.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    X = ndl.Tensor(x, device=device, dtype="float64")
    out = layer(X)
    t_x = torch.from_numpy(x).requires_grad_(True)
    t_out = reference(t_x)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-10, atol=1e-10)
    g = np.random.default_rng(1).standard_normal(t_out.shape)
    out.backward(ndl.Tensor(g, device=device, dtype="float64", requires_grad=False))
    t_out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(X.grad.numpy(), t_x.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(to_torch_conv_weight(layer.weight.grad.numpy()),
                               reference.weight.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(layer.bias.grad.numpy(), reference.bias.grad.numpy(),
                               rtol=1e-9, atol=1e-9)


@given(case=layer_cases(), seed=st.integers(0, 2 ** 16))
def test_conv2d_rectangular_kernels_and_pairs_match_torch(case, seed, device):
    torch = pytest.importorskip("torch")
    kwargs, shape, c_out = case
    layer = nn.Conv2d(shape[1], c_out, device=device, dtype="float64", **kwargs)
    kh, kw = pair(kwargs["kernel_size"])
    assert layer.weight.shape == (kh, kw, shape[1], c_out)
    bound = 1 / math.sqrt(shape[1] * kh * kw)  # PyTorch's U(+-1/sqrt(fan_in))
    assert np.abs(layer.weight.numpy()).max() <= bound
    reference = torch.nn.Conv2d(shape[1], c_out, dtype=torch.float64, **kwargs)
    x = np.random.default_rng(seed).standard_normal(shape)
    check_against_torch(torch, layer, reference, x, device)


@given(case=layer_cases(transposed=True), seed=st.integers(0, 2 ** 16))
def test_conv_transpose2d_rectangular_kernels_and_pairs_match_torch(case, seed, device):
    torch = pytest.importorskip("torch")
    kwargs, shape, c_out = case
    layer = nn.ConvTranspose2d(shape[1], c_out, device=device, dtype="float64", **kwargs)
    kh, kw = pair(kwargs["kernel_size"])
    assert layer.weight.shape == (kh, kw, c_out, shape[1])
    assert np.abs(layer.weight.numpy()).max() <= 1 / math.sqrt(c_out * kh * kw)
    reference = torch.nn.ConvTranspose2d(shape[1], c_out, dtype=torch.float64, **kwargs)
    x = np.random.default_rng(seed).standard_normal(shape)
    check_against_torch(torch, layer, reference, x, device)


@pytest.mark.parametrize("layer", [nn.Conv(3, 4, 3), nn.Conv2d(3, 4, 3),
                                   nn.ConvTranspose2d(3, 4, 3)], ids=lambda m: type(m).__name__)
def test_wrong_input_channels_names_the_layer_and_both_shapes(layer):
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got shape "
                                         r"\(2, 5, 8, 8\)") as error:
        layer(ndl.Tensor(np.zeros((2, 5, 8, 8), np.float32)))
    assert type(layer).__name__ in str(error.value)


def torch_dcgan(torch):
    """PyTorch layers with the architecture of gan.models.dcgan at 28x28, width 8."""
    nn_ = torch.nn
    generator = nn_.Sequential(
        nn_.ConvTranspose2d(16, 32, 7, bias=False), nn_.BatchNorm2d(32), nn_.ReLU(),
        nn_.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), nn_.BatchNorm2d(16), nn_.ReLU(),
        nn_.ConvTranspose2d(16, 1, 4, 2, 1, bias=False), nn_.Tanh())
    discriminator = nn_.Sequential(
        nn_.Conv2d(1, 8, 4, 2, 1, bias=False), nn_.LeakyReLU(0.2),
        nn_.Conv2d(8, 16, 4, 2, 1, bias=False), nn_.BatchNorm2d(16), nn_.LeakyReLU(0.2),
        nn_.Conv2d(16, 1, 7, bias=False))
    return generator, discriminator


def load_into_torch(torch, arrays, torch_model):
    """Copy needle arrays (in the model's state_dict order) into the torch layers: the
    layout notes of needle.serialization, applied in one place."""
    arrays = iter(arrays)
    with torch.no_grad():
        for module in torch_model:
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.weight.copy_(torch.from_numpy(to_torch_conv_weight(next(arrays))))
            elif isinstance(module, torch.nn.BatchNorm2d):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(module, name).copy_(torch.from_numpy(next(arrays)))


def test_saved_dcgan_weights_load_into_pytorch_with_equal_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    from gan.models.dcgan import Discriminator, Generator
    np.random.seed(0)
    G, D = Generator(latent_dim=16, width=8), Discriminator(width=8)
    z = ndl.Tensor(np.random.randn(4, 16).astype(np.float32), requires_grad=False)
    for _ in range(2):  # move the BatchNorm running statistics away from 0 and 1
        D(G(z))
    G.eval()
    D.eval()
    ndl.save(G.state_dict(), tmp_path / "G.safetensors")
    ndl.save(D.state_dict(), tmp_path / "D.safetensors")
    t_G, t_D = torch_dcgan(torch)
    loaded_G, loaded_D = ndl.load(tmp_path / "G.safetensors"), ndl.load(tmp_path / "D.safetensors")
    load_into_torch(torch, [loaded_G[key] for key in G.state_dict()], t_G)
    load_into_torch(torch, [loaded_D[key] for key in D.state_dict()], t_D)
    t_G.eval()
    t_D.eval()
    images = G(z)
    with torch.no_grad():
        t_images = t_G(torch.from_numpy(z.numpy()).view(4, 16, 1, 1))
        t_logits = t_D(t_images).view(4)
    np.testing.assert_allclose(images.numpy(), t_images.numpy(), atol=1e-5)
    np.testing.assert_allclose(D(images).numpy(), t_logits.numpy(), atol=1e-5)


def test_tiny_conv_net_learns_mnist():
    """A few hundred steps on 2000 digits: well above the 10% of chance on held-out ones."""
    data = ndl.data.load_mnist(os.path.join(ROOT, "data", "mnist"), train=False)
    images = (data.images.reshape(-1, 1, 28, 28) * 2 - 1).astype(np.float32)
    labels = data.labels.astype(np.int64)
    np.random.seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    opt = ndl.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.SoftmaxLoss()
    for step in range(200):
        index = np.random.randint(0, 2000, 32)
        loss = loss_fn(model(ndl.Tensor(images[index], requires_grad=False)),
                       ndl.Tensor(labels[index], requires_grad=False))
        opt.reset_grad()
        loss.backward(create_graph=False)
        opt.step()
    model.eval()
    with ndl.no_grad():
        logits = model(ndl.Tensor(images[2000:2500], requires_grad=False)).numpy()
    accuracy = float((logits.argmax(axis=1) == labels[2000:2500]).mean())
    assert accuracy > 0.7, accuracy
    assert np.isfinite(ops.summation(model(ndl.Tensor(images[:4])) * 0).numpy())


@pytest.mark.parametrize("layer", [nn.Conv2d, nn.ConvTranspose2d])
def test_kernel_size_that_is_neither_int_nor_pair_names_the_layer(layer):
    with pytest.raises(ValueError, match=rf"{layer.__name__}: kernel_size must be an int or "
                                         r"an \(h, w\) pair of ints, got \(3, 2, 1\)"):
        layer(1, 2, (3, 2, 1))
