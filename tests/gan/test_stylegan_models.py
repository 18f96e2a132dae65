"""StyleGAN-lite's pieces: the modulated convolution against a direct NumPy computation of
StyleGAN2's eq. 1-3 (each sample's own modulated, demodulated weights) and its gradients
against PyTorch's grouped convolution of those weights (float64), its second derivative,
the resampling ops, truncation, style mixing's per-layer styles, w_avg tracking, the noise
inputs and the shapes of G and D."""
import numpy as np
import pytest

import needle as ndl
from gan.models.stylegan import (StyleGANDiscriminator, StyleGANGenerator, downsample_average,
                                 modulated_conv, num_ws_for, upsample_bilinear,
                                 _bilinear_kernel)
from needle import nn
from needle.gradcheck import gradcheck, gradgradcheck

pytestmark = pytest.mark.nd_only


def t64(array, requires_grad=True):
    return ndl.Tensor(np.asarray(array, dtype=np.float64), dtype="float64",
                      requires_grad=requires_grad)


def direct_modulated_conv(x, weight, styles, demodulate, eps=1e-8):
    """eq. 1-3 as written: per sample n, w'_ijk = s_i w_ijk, w''_ijk = w'_ijk /
    sqrt(sum_{i,k} w'_ijk^2 + eps), then a 'same' cross-correlation with w''. NHWC in and
    out, weight (K, K, Cin, Cout)."""
    n, h, w, _ = x.shape
    k, _, _, c_out = weight.shape
    p = k // 2
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((n, h, w, c_out))
    for b in range(n):
        wb = weight * styles[b][None, None, :, None]                       # eq. 1
        if demodulate:
            wb = wb / np.sqrt((wb ** 2).sum(axis=(0, 1, 2), keepdims=True) + eps)  # eq. 2-3
        for i in range(h):
            for j in range(w):
                patch = padded[b, i:i + k, j:j + k, :]
                out[b, i, j] = np.einsum("abc,abcd->d", patch, wb)
    return out


@pytest.mark.parametrize("kernel, demodulate", [(3, True), (1, False), (3, False)])
def test_modulated_conv_equals_each_samples_own_modulated_weights(kernel, demodulate):
    rng = np.random.RandomState(0)
    x, weight = rng.randn(3, 5, 4, 4), rng.randn(kernel, kernel, 4, 6)
    styles = rng.randn(3, 4) + 1.0
    got = modulated_conv(t64(x), t64(weight), t64(styles), demodulate=demodulate).numpy()
    np.testing.assert_allclose(got, direct_modulated_conv(x, weight, styles, demodulate),
                               rtol=1e-10, atol=1e-12)


def test_modulated_conv_gradients_match_pytorch_grouped_conv_of_the_fused_weights():
    """The fused form (one group per sample, as StyleGAN2's fused_modconv=True) in PyTorch:
    an independent formulation of the same function, its autograd the oracle."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(1)
    n, c_in, c_out, k = 2, 3, 4, 3
    x, weight = rng.randn(n, 5, 6, c_in), rng.randn(k, k, c_in, c_out)
    styles, upstream = rng.randn(n, c_in) + 1.0, rng.randn(n, 5, 6, c_out)

    X, W, S = t64(x), t64(weight), t64(styles)
    y = modulated_conv(X, W, S)
    ndl.summation(y * t64(upstream, False)).backward()

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)       # NCHW
    tw = torch.tensor(weight.transpose(3, 2, 0, 1), requires_grad=True)  # (Cout, Cin, K, K)
    ts = torch.tensor(styles, requires_grad=True)
    wb = tw[None] * ts[:, None, :, None, None]                           # (N, Cout, Cin, K, K)
    wb = wb / torch.sqrt((wb ** 2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    ty = torch.nn.functional.conv2d(tx.reshape(1, n * c_in, 5, 6),
                                    wb.reshape(n * c_out, c_in, k, k), padding=1, groups=n)
    ty = ty.reshape(n, c_out, 5, 6)
    (ty * torch.tensor(upstream.transpose(0, 3, 1, 2))).sum().backward()

    np.testing.assert_allclose(y.numpy(), ty.detach().numpy().transpose(0, 2, 3, 1),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(W.grad.numpy(), tw.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(S.grad.numpy(), ts.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_modulated_conv_has_second_derivatives_in_input_weight_and_style():
    rng = np.random.RandomState(2)
    x, weight, styles = t64(rng.randn(2, 3, 3, 2)), t64(rng.randn(3, 3, 2, 2)), \
        t64(rng.randn(2, 2) + 1.0)
    gradcheck(lambda x, w, s: modulated_conv(x, w, s), x, weight, styles)
    gradgradcheck(lambda x, w, s: modulated_conv(x, w, s), x, weight, styles)


def test_modulated_conv_names_mismatched_shapes():
    with pytest.raises(ValueError, match="modulated_conv: x has 4 channels and 2 samples"):
        modulated_conv(t64(np.ones((2, 3, 3, 4))), t64(np.ones((3, 3, 4, 2))),
                       t64(np.ones((3, 4))))


def test_resampling_against_numpy_and_the_bilinear_filter_by_hand():
    rng = np.random.RandomState(3)
    x = rng.randn(2, 3, 4, 2)
    np.testing.assert_allclose(downsample_average(t64(x[:, :2])).numpy(),
                               downsample_reference(x[:, :2]), rtol=1e-12)
    # [1, 3, 3, 1] / 4 on each axis: output 2i + a takes 3/4 of input i and 1/4 of its
    # neighbour towards a (zero beyond the border)
    up = upsample_bilinear(t64(x), _bilinear_kernel(2, None, "float64")).numpy()
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.zeros((2, 6, 8, 2))
    for i in range(6):
        for j in range(8):
            ci, cj = i // 2 + 1, j // 2 + 1
            ni, nj = ci + (1 if i % 2 else -1), cj + (1 if j % 2 else -1)
            expected[:, i, j] = (9 * padded[:, ci, cj] + 3 * padded[:, ni, cj]
                                 + 3 * padded[:, ci, nj] + padded[:, ni, nj]) / 16
    np.testing.assert_allclose(up, expected, rtol=1e-12, atol=1e-14)
    gradgradcheck(lambda x: upsample_bilinear(x, _bilinear_kernel(2, None, "float64")), t64(x))
    gradgradcheck(downsample_average, t64(x[:, :2]))


def downsample_reference(x):
    """The mean of each 2x2 block, by slicing."""
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4


def tiny_generator(mixing_prob=0.9, seed=0, noise=True, **options):
    np.random.seed(seed)
    return StyleGANGenerator(latent_dim=6, w_dim=5, image_size=16, width=2,
                             mapping_layers=2, mixing_prob=mixing_prob, noise=noise, **options)


def z_of(rng, n=3, dim=6):
    return ndl.Tensor(rng.randn(n, dim).astype(np.float32), requires_grad=False)


def test_truncation_psi_0_gives_w_avg_and_psi_1_the_identity():
    G = tiny_generator().eval()
    G.mapping.w_avg.data = ndl.Tensor(np.arange(5, dtype=np.float32)).detach()
    w = G.mapping(z_of(np.random.RandomState(4)))
    np.testing.assert_allclose(G.truncate(w, 0.0).numpy(),
                               np.tile(np.arange(5, dtype=np.float32), (3, 1)), atol=1e-6)
    assert G.truncate(w, 1.0) is w
    np.testing.assert_allclose(G.truncate(w, 0.25).numpy(),
                               np.arange(5) + 0.25 * (w.numpy() - np.arange(5)), rtol=1e-5)
    # G(z, psi=0) is the image of w_avg for every z (eval: constant noise)
    images = G(z_of(np.random.RandomState(5)), psi=0.0).numpy()
    avg = ndl.Tensor(np.tile(np.arange(5, dtype=np.float32), (3, 1)))
    np.testing.assert_allclose(images, G.synthesis([avg] * G.num_ws).numpy(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("demodulate", [True, False])
def test_a_synthesis_layer_is_the_modulated_conv_then_bias_and_leaky_relu(demodulate):
    """With demodulate=False every 3x3 layer modulates without demodulating (the toRGB
    layers never demodulate); checked against eq. 1-3 in NumPy, then bias, leaky ReLU 0.2
    times sqrt(2)."""
    G = tiny_generator(mixing_prob=0.0, noise=False, demodulate=demodulate).eval()
    assert all(layer.demodulate == (demodulate and not layer.to_rgb) for layer in G.layers())
    layer = G.blocks[1].conv1
    rng = np.random.RandomState(12)
    layer.bias.data = ndl.Tensor(rng.randn(*layer.bias.shape).astype(np.float32)).detach()
    x = rng.randn(3, 8, 8, layer.weight.shape[2]).astype(np.float32)
    w = rng.randn(3, 5).astype(np.float32)
    got = layer(ndl.Tensor(x), [ndl.Tensor(w)] * G.num_ws).numpy()
    affine = layer.affine
    styles = w.astype(np.float64) @ (affine.weight.numpy() * affine.weight_gain) + \
        affine.bias.numpy()
    y = direct_modulated_conv(x.astype(np.float64), layer.weight.numpy() * layer.weight_gain,
                              styles, demodulate) + layer.bias.numpy()
    expected = np.where(y > 0, y, 0.2 * y) * np.sqrt(2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_tanh_output_is_tanh_of_the_linear_skip_sum():
    linear = tiny_generator(mixing_prob=0.0, noise=False).eval()
    squashed = tiny_generator(mixing_prob=0.0, noise=False, output="tanh").eval()
    squashed.load_state_dict(linear.state_dict())
    z = z_of(np.random.RandomState(13), n=4)
    raw = linear(z).numpy().astype(np.float64)
    assert np.abs(raw).max() > 0.5  # tanh is far from the identity on these
    np.testing.assert_allclose(squashed(z).numpy(), np.tanh(raw), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="output must be one of"):
        StyleGANGenerator(image_size=16, width=2, output="sigmoid")


class Recorder(nn.Module):
    """Stands in for a layer's affine: remembers the w it was given."""

    def __init__(self, affine):
        super().__init__()
        self.inner, self.seen = affine, None

    def forward(self, w):
        self.seen = w.numpy()
        return self.inner(w)


def test_style_mixing_gives_layers_before_the_crossover_w_of_z_and_after_it_w_of_z2():
    G = tiny_generator(mixing_prob=1.0)
    layers = G.layers()
    # StyleGAN2's indexing: a block's toRGB shares its w with the next block's first conv
    assert [layer.w_index for layer in layers] == [0, 1, 1, 2, 3, 3, 4, 5]
    assert G.num_ws == num_ws_for(16) == 6
    for layer in layers:
        layer.affine = Recorder(layer.affine)
    z = z_of(np.random.RandomState(6))
    np.random.seed(11)
    G(z)  # training mode
    np.random.seed(11)  # the draws again, in G's order: coin, crossover, z2
    assert np.random.rand() < 1.0
    crossover = np.random.randint(1, G.num_ws)
    z2 = np.random.randn(3, 6).astype(np.float32)
    G.eval()  # the same mapping without touching w_avg
    w, w2 = G.mapping(z).numpy(), G.mapping(ndl.Tensor(z2)).numpy()
    for layer in layers:
        expected = w if layer.w_index < crossover else w2
        np.testing.assert_allclose(layer.affine.seen, expected, rtol=1e-6, err_msg=str(
            layer.w_index))
    assert 1 <= crossover < G.num_ws


def test_without_mixing_every_layer_gets_w_of_z_and_the_rng_only_draws_noise():
    G = tiny_generator(mixing_prob=0.0)
    z = z_of(np.random.RandomState(7))
    ws = G.training_styles(z)
    assert len(ws) == G.num_ws and all(w is ws[0] for w in ws)
    state = np.random.get_state()[1].copy()
    G.training_styles(z)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_w_avg_follows_the_batch_means_in_training_only():
    G = tiny_generator()
    z = z_of(np.random.RandomState(8))
    G.eval()
    w = G.mapping(z).numpy()
    np.testing.assert_array_equal(G.w_avg.numpy(), 0)
    G.train()
    G.mapping(z)
    np.testing.assert_allclose(G.w_avg.numpy(), (1 - 0.995) * w.mean(axis=0), rtol=1e-5)
    G.mapping(z, update_w_avg=False)
    np.testing.assert_allclose(G.w_avg.numpy(), (1 - 0.995) * w.mean(axis=0), rtol=1e-5)
    assert "mapping.w_avg" in G.state_dict()


def test_noise_is_fresh_in_training_constant_in_eval_and_scaled_per_channel():
    G = tiny_generator(mixing_prob=0.0)
    for layer in G.layers():
        if layer.noise is not None:
            layer.noise.strength.data = ndl.Tensor(
                np.full(layer.noise.strength.shape, 0.5, np.float32)).detach()
    z = z_of(np.random.RandomState(9))
    G.eval()
    a, b = G(z).numpy(), G(z).numpy()
    np.testing.assert_array_equal(a, b)
    G.train()
    c, d = G(z).numpy(), G(z).numpy()
    assert not np.allclose(c, d)
    layer = G.layers()[0]  # the 4x4 conv: noise x strength added per channel
    x = ndl.Tensor(np.zeros((2, 4, 4, 8), np.float32))
    layer.noise.strength.data = ndl.Tensor(np.arange(8, dtype=np.float32)).detach()
    layer.noise.eval()
    out = layer.noise(x).numpy()
    const = layer.noise.noise_const.numpy()[0, :, :, 0]
    np.testing.assert_allclose(out, np.broadcast_to(const[None, :, :, None] * np.arange(8),
                                                    out.shape), rtol=1e-6)


def test_without_noise_inputs_a_training_forward_is_a_function_of_z_alone():
    G = tiny_generator(mixing_prob=0.0, noise=False)
    assert all(layer.noise is None for layer in G.layers())
    assert not any("noise" in key for key in G.state_dict())
    z = z_of(np.random.RandomState(9))
    state = np.random.get_state()[1].copy()
    a, b = G(z).numpy(), G(z).numpy()  # training mode, no mixing: no random numbers
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    G.eval()
    np.testing.assert_allclose(G(z).numpy(), a, rtol=1e-6)
    # a G with noise inputs at strength 0 (as initialised) gives the images of its weights
    # without them
    noisy = tiny_generator(mixing_prob=0.0, noise=True).eval()
    G.load_state_dict({key: value for key, value in noisy.state_dict().items()
                       if "noise" not in key})
    np.testing.assert_allclose(G(z).numpy(), noisy(z).numpy(), rtol=1e-6, atol=1e-7)


def test_each_block_upsamples_the_previous_features_with_the_1331_filter():
    G = tiny_generator(mixing_prob=0.0).eval()
    seen = {}
    for block in G.blocks[1:]:
        conv0 = block.conv0

        def recording(x, ws, conv0=conv0, resolution=block.resolution):
            seen[resolution] = x.numpy()
            return conv0(x, ws)
        block.conv0 = recording
    outputs = {}
    for block in G.blocks:
        conv1 = block.conv1

        def keep(x, ws, conv1=conv1, resolution=block.resolution):
            outputs[resolution] = out = conv1(x, ws)
            return out
        block.conv1 = keep
    G(z_of(np.random.RandomState(4)))
    for resolution in (8, 16):
        features = outputs[resolution // 2].numpy().astype(np.float64)
        channels = features.shape[-1]
        expected = upsample_bilinear(t64(features, requires_grad=False),
                                     _bilinear_kernel(channels, None, "float64")).numpy()
        np.testing.assert_allclose(seen[resolution], expected, rtol=1e-5, atol=1e-6)


def test_generator_and_discriminator_shapes_and_errors():
    G = tiny_generator()
    D = StyleGANDiscriminator(1, 16, width=2)
    images = G(z_of(np.random.RandomState(10), n=4))
    assert images.shape == (4, 1, 16, 16)
    assert D(images).shape == (4,)
    with pytest.raises(ValueError, match="power of two >= 8, got 28"):
        StyleGANGenerator(image_size=28)
    with pytest.raises(ValueError, match=r"expected images \(N, 1, 16, 16\)"):
        D(ndl.Tensor(np.zeros((2, 1, 32, 32), np.float32)))
    with pytest.raises(ValueError, match=r"expected z of shape \(N, 6\)"):
        G(ndl.Tensor(np.zeros((2, 5), np.float32)))


def test_the_discriminator_is_twice_differentiable_for_r1():
    np.random.seed(12)
    D = StyleGANDiscriminator(1, 8, width=1, dtype="float64")
    x = t64(np.random.RandomState(13).randn(4, 1, 8, 8))
    gradgradcheck(lambda x: D(x), x)
