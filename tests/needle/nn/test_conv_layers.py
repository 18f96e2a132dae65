"""Conv layers against PyTorch, the named channel error, weights that load into PyTorch,
and a real training signal from a tiny conv net on MNIST."""
import os

import numpy as np
import pytest

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
