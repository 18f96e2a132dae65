"""StyleGAN-lite (Karras et al. 2019, 2020): a style-based generator and a residual D for
small square images (32x32 MNIST by default), in needle ops, twice differentiable.

Generator G(z):
  mapping    z -> pixel norm -> `mapping_layers` x (Linear, leaky ReLU 0.2) -> w. Every
             layer of G and D uses the equalized learning rate (weights stored ~ N(0, 1),
             scaled at run time by 1/sqrt(fan_in)); the mapping's layers also by StyleGAN's
             lr multiplier 0.01 (weights stored ~ N(0, 1/0.01^2), times 0.01/sqrt(fan_in)),
             so Adam moves them 100x slower than the synthesis.
  synthesis  a learned constant 4x4 input, then one block per resolution 4, 8, ..., size:
             (2x upsampling with StyleGAN2's [1, 3, 3, 1] filter,) modulated 3x3
             convolutions with demodulation, each followed by per-pixel noise times a
             learned per-channel strength (zero at first; `noise=False`: none), a bias and
             leaky ReLU 0.2 times sqrt(2); StyleGAN2's
             skip generator: every block's toRGB (a modulated 1x1 conv, not demodulated)
             adds to the image so far, upsampled 2x bilinearly (StyleGAN2's [1, 3, 3, 1]
             filter, as a stride-2 transposed conv). The output is linear, as StyleGAN's
             (pictures and metrics clip to [-1, 1]), or with output="tanh" tanh of that
             sum; demodulate=False drops the demodulation (the 3x3 layers only modulate).
             apps.train_stylegan trains output="tanh" with noise=False by default (its
             docstring: why).
  styles     one w per modulated layer: num_ws = 2 log2(size) - 2 (8 at 32x32), indexed as
             StyleGAN2 does (a block's toRGB shares its w with the next block's first conv).

Modulated convolution (StyleGAN2 eq. 1-3) in StyleGAN2's non-fused form (its
fused_modconv=False; needle has no grouped conv), mathematically equal to modulating and
demodulating each sample's weights:

    y_j = d_j * conv(x * s, w)_j,   d_j = 1 / sqrt(sum_{i,k} (s_i w_ijk)^2 + eps)
        = 1 / sqrt(sum_i s_i^2 sum_k w_ijk^2 + eps)

with s = affine(w) (bias 1 at first) per sample and input channel i, j the output channel
and k the kernel position: `modulated_conv`.

Training mode (G.train()):
  * style mixing regularisation: with probability `mixing_prob` the batch takes a second
    z2 and a crossover c drawn uniformly from 1 .. num_ws - 1; layers with w index < c get
    w(z), the rest w(z2) (one c per batch, as StyleGAN2's code);
  * noise: fresh N(0, 1) per pixel, one map per sample and layer, shared by its channels;
  * w_avg (a buffer) <- mean_batch(w(z)) + beta (w_avg - mean_batch(w(z))), beta 0.995.
  Every random number comes from NumPy's global RNG, which gan.Trainer's checkpoints hold, so
  a resumed run draws the same mixing, crossovers and noise as an uninterrupted one.
Eval mode (G.eval(): samples, metrics, pictures): no mixing, no RNG; each layer's noise is
its constant map (a buffer drawn at construction, StyleGAN's noise_mode='const'); truncation
w' = w_avg + psi (w - w_avg) with `G(z, psi=...)` (default 1: none).

Discriminator: fromRGB (1x1), then per resolution a residual block (3x3 conv, 2x2 average
pool, 3x3 conv; skip: pool then 1x1 conv; sum times sqrt(1/2)) down to 4x4, then the minibatch
standard deviation (gan.models.MinibatchStd, group 4), a 3x3 conv, a dense layer and one
logit per image, shape (N,).

Shapes: G(z) (N, latent_dim) -> (N, channels, size, size); D(x) (N, channels, size, size) ->
(N,). Internally NHWC, the layout of needle's conv op.
"""
import math

import numpy as np

from needle import init, nn, ops
from needle.autograd import Tensor, no_grad

from .minibatch_std import MinibatchStd

__all__ = ["modulated_conv", "upsample_bilinear", "downsample_average",
           "StyleGANGenerator", "StyleGANDiscriminator", "MappingNetwork", "num_ws_for",
           "channels_at"]

_SQRT2 = math.sqrt(2.0)
OUTPUTS = ("linear", "tanh")
_SLOPE = 0.2
_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _size_plan(image_size):
    """log2(image_size), for a power of two >= 8; a one-line error otherwise."""
    if int(image_size) != image_size or image_size < 8 or \
            int(image_size) & (int(image_size) - 1):
        raise ValueError(f"StyleGAN: image_size must be a power of two >= 8, got {image_size}")
    return int(round(math.log2(image_size)))


def num_ws_for(image_size):
    """Modulated layers (styles) of a StyleGAN2 skip generator: 2 log2(size) - 2."""
    return 2 * _size_plan(image_size) - 2


def channels_at(resolution, image_size, width):
    """Feature channels at `resolution`: width at the full size, doubled per halving, at
    most 4 * width (16, 32, 64, 64 at 32, 16, 8, 4 for width 16)."""
    return min(width * image_size // resolution, 4 * width)


def _along_last(vector, shape):
    """A (C,) tensor broadcast over an (..., C) shape."""
    return ops.broadcast_to(ops.reshape(vector, (1,) * (len(shape) - 1) + (shape[-1],)), shape)


def _per_sample_channel(values, shape):
    """(N, C) values broadcast over an NHWC shape."""
    n, _, _, c = shape
    return ops.broadcast_to(ops.reshape(values, (n, 1, 1, c)), shape)


def _act(x):
    """StyleGAN's leaky ReLU 0.2 with gain sqrt(2) (keeps the signal's magnitude)."""
    return ops.leaky_relu(x, _SLOPE) * _SQRT2


def modulated_conv(x, weight, styles, demodulate=True, padding=None, eps=1e-8):
    """StyleGAN2's modulated (and demodulated) convolution, non-fused form.

    x (N, H, W, Cin) NHWC, weight (K, K, Cin, Cout), styles (N, Cin) -> (N, H', W', Cout);
    padding default K // 2 ("same"). Each sample's input channels are scaled by its styles,
    convolved with the shared weight, and with `demodulate` each output channel j is
    multiplied by 1 / sqrt(sum_{i,k} (s_i w_ijk)^2 + eps). Built from needle ops only, so
    it has first and second derivatives in x, weight and styles.
    """
    if len(x.shape) != 4 or len(weight.shape) != 4 or len(styles.shape) != 2:
        raise ValueError(f"modulated_conv: expected x (N, H, W, Cin), weight (K, K, Cin, "
                         f"Cout) and styles (N, Cin), got shapes {x.shape}, {weight.shape}, "
                         f"{styles.shape}")
    n, _, _, c_in = x.shape
    if weight.shape[2] != c_in or tuple(styles.shape) != (n, c_in):
        raise ValueError(f"modulated_conv: x has {c_in} channels and {n} samples but the "
                         f"weight is {weight.shape} and the styles {styles.shape}")
    padding = weight.shape[0] // 2 if padding is None else padding
    y = ops.conv(x * _per_sample_channel(styles, x.shape), weight, stride=1, padding=padding)
    if not demodulate:
        return y
    energy = ops.summation(weight * weight, axes=(0, 1))           # (Cin, Cout)
    demod = ops.sqrt((styles * styles) @ energy + eps)             # (N, Cout)
    return y / _per_sample_channel(demod, y.shape)


def _bilinear_kernel(channels, device, dtype):
    """(4, 4, C, C): StyleGAN2's [1, 3, 3, 1] upsampling filter (gain 4) on each channel."""
    taps = np.array([1.0, 3.0, 3.0, 1.0]) / 4.0
    kernel = np.einsum("a,b,ij->abij", taps, taps, np.eye(channels))
    return Tensor(kernel.astype(dtype), device=device, dtype=dtype, requires_grad=False)


def upsample_bilinear(x, kernel):
    """NHWC (N, H, W, C) -> (N, 2H, 2W, C) with the [1, 3, 3, 1] filter (bilinear with
    half-pixel centres; zero outside the image, as StyleGAN2's upfirdn2d): a stride-2
    transposed conv with `kernel` from _bilinear_kernel."""
    return ops.conv_transpose(x, kernel, stride=2, padding=1)


def downsample_average(x):
    """NHWC (N, H, W, C) -> (N, H/2, W/2, C): the mean of each 2x2 block."""
    n, h, w, c = x.shape
    blocks = ops.reshape(x, (n, h // 2, 2, w // 2, 2, c))
    return ops.summation(blocks, axes=(2, 4)) * 0.25


class EqualLinear(nn.Module):
    """y = x (W * lr_mul / sqrt(in)) + b * lr_mul, W stored ~ N(0, 1 / lr_mul^2): the
    equalized learning rate; `activation`: StyleGAN's leaky ReLU with gain sqrt(2)."""

    def __init__(self, in_features, out_features, bias_init=0.0, lr_mul=1.0,
                 activation=False, device=None, dtype="float32"):
        super().__init__()
        self.weight = nn.Parameter(init.randn(in_features, out_features, std=1.0 / lr_mul,
                                              device=device, dtype=dtype))
        self.bias = nn.Parameter(init.constant(out_features, c=bias_init, device=device,
                                               dtype=dtype))
        self.weight_gain, self.lr_mul = lr_mul / math.sqrt(in_features), lr_mul
        self.activation = activation

    def forward(self, x):
        y = x @ (self.weight * self.weight_gain)
        y = y + _along_last(self.bias * self.lr_mul, y.shape)
        return _act(y) if self.activation else y


class EqualConv(nn.Module):
    """NHWC conv with the equalized learning rate ('same' padding), optional bias and
    StyleGAN's activation."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation=True,
                 device=None, dtype="float32"):
        super().__init__()
        self.weight = nn.Parameter(init.randn(kernel_size, kernel_size, in_channels,
                                              out_channels, device=device, dtype=dtype))
        self.bias = nn.Parameter(init.zeros(out_channels, device=device, dtype=dtype)) \
            if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation = activation

    def forward(self, x):
        y = ops.conv(x, self.weight * self.weight_gain, stride=1,
                     padding=self.weight.shape[0] // 2)
        if self.bias is not None:
            y = y + _along_last(self.bias, y.shape)
        return _act(y) if self.activation else y


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then `num_layers` equalized Linear layers with leaky ReLU and lr
    multiplier `lr_mul`; in training mode w_avg tracks the batch means of w."""

    def __init__(self, latent_dim, w_dim, num_layers=4, lr_mul=0.01, w_avg_beta=0.995,
                 device=None, dtype="float32"):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MappingNetwork: num_layers must be >= 1, got {num_layers}")
        self.layers = [EqualLinear(latent_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul,
                                   activation=True, device=device, dtype=dtype)
                       for i in range(num_layers)]
        self.w_avg_beta = float(w_avg_beta)
        self.register_buffer("w_avg", init.zeros(w_dim, device=device, dtype=dtype))

    def forward(self, z, update_w_avg=True):
        x = z / ops.sqrt(ops.broadcast_to(ops.reshape(
            ops.mean(z * z, axes=(1,)), (z.shape[0], 1)), z.shape) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        if self.training and update_w_avg:
            with no_grad():
                batch = ops.mean(x.detach(), axes=(0,))
                self.w_avg.data = (batch + (self.w_avg - batch) * self.w_avg_beta).detach()
        return x


class NoiseInput(nn.Module):
    """x + noise * strength: per-pixel N(0, 1) noise (a fresh map per sample in training, the
    constant buffer `noise_const` in eval), a learned strength per channel (zero at first)."""

    def __init__(self, channels, resolution, device=None, dtype="float32"):
        super().__init__()
        self.strength = nn.Parameter(init.zeros(channels, device=device, dtype=dtype))
        self.register_buffer("noise_const", init.randn(1, resolution, resolution, 1,
                                                       device=device, dtype=dtype))

    def forward(self, x):
        n, h, w, c = x.shape
        if self.training:
            noise = init.randn(n, h, w, 1, device=x.device, dtype=x.dtype)
        else:
            noise = ops.broadcast_to(self.noise_const, (n, h, w, 1))
        return x + ops.broadcast_to(noise, x.shape) * _along_last(self.strength, x.shape)


class ModulatedLayer(nn.Module):
    """affine(w) -> styles; modulated conv of x; then (for a synthesis layer) noise, bias and
    activation, or (toRGB: kernel 1, no demodulation, no noise) just the bias. `w_index`:
    which of the generator's num_ws styles drives it."""

    def __init__(self, in_channels, out_channels, w_dim, w_index, kernel_size=3,
                 resolution=None, to_rgb=False, noise=True, demodulate=True, device=None,
                 dtype="float32"):
        super().__init__()
        self.w_index, self.to_rgb = w_index, to_rgb
        self.demodulate = demodulate and not to_rgb
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0, device=device,
                                  dtype=dtype)
        self.weight = nn.Parameter(init.randn(kernel_size, kernel_size, in_channels,
                                              out_channels, device=device, dtype=dtype))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.noise = NoiseInput(out_channels, resolution, device=device, dtype=dtype) \
            if noise and not to_rgb else None
        self.bias = nn.Parameter(init.zeros(out_channels, device=device, dtype=dtype))

    def forward(self, x, ws):
        styles = self.affine(ws[self.w_index])
        y = modulated_conv(x, self.weight * self.weight_gain, styles,
                           demodulate=self.demodulate)
        if self.noise is not None:
            y = self.noise(y)
        y = y + _along_last(self.bias, y.shape)
        return y if self.to_rgb else _act(y)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [upsample, conv0,] conv1, toRGB."""

    def __init__(self, in_channels, out_channels, image_channels, w_dim, resolution,
                 first_w, noise=True, demodulate=True, device=None, dtype="float32"):
        super().__init__()
        self.resolution = resolution
        kw = dict(device=device, dtype=dtype)
        conv_kw = dict(noise=noise, demodulate=demodulate, **kw)
        if resolution == 4:
            self.const = nn.Parameter(init.randn(1, 4, 4, out_channels, **kw))
            self.conv0 = None
            self.conv1 = ModulatedLayer(out_channels, out_channels, w_dim, first_w,
                                        resolution=4, **conv_kw)
        else:
            self.const = None
            self.conv0 = ModulatedLayer(in_channels, out_channels, w_dim, first_w,
                                        resolution=resolution, **conv_kw)
            self.conv1 = ModulatedLayer(out_channels, out_channels, w_dim, first_w + 1,
                                        resolution=resolution, **conv_kw)
            # filtered, as StyleGAN2 upsamples; nearest-neighbour repeats made a 3x3 conv's
            # outputs alternate pixel by pixel (speckle the D did not remove)
            self._feature_up = _bilinear_kernel(in_channels, device, dtype)
        self.torgb = ModulatedLayer(out_channels, image_channels, w_dim,
                                    self.conv1.w_index + 1, kernel_size=1, to_rgb=True, **kw)

    def forward(self, x, image, ws, up_kernel):
        if self.const is not None:
            n = ws[0].shape[0]
            x = ops.broadcast_to(self.const, (n, *self.const.shape[1:]))
        else:
            x = self.conv0(upsample_bilinear(x, self._feature_up), ws)
        x = self.conv1(x, ws)
        rgb = self.torgb(x, ws)
        image = rgb if image is None else upsample_bilinear(image, up_kernel) + rgb
        return x, image


class StyleGANGenerator(nn.Module):
    """G(z, psi=1.0): mapping network, then the skip synthesis network (module docstring).

    latent_dim: size of z; w_dim: size of w; image_size: a power of two >= 8; channels: of
    the images; width: feature channels at the full size (channels_at); mapping_layers,
    mapping_lr_mul: the mapping network's depth and lr multiplier; mixing_prob: the style
    mixing probability in training; w_avg_beta: the decay of the w_avg tracking; noise:
    whether the synthesis layers have noise inputs (StyleGAN's; False: none, and a training
    forward draws random numbers only for style mixing); demodulate: whether the 3x3
    convolutions demodulate (StyleGAN2's; False: modulation only); output: "linear"
    (StyleGAN's) or "tanh" (the image is tanh of the skip sum).
    """

    def __init__(self, latent_dim=64, w_dim=64, image_size=32, channels=1, width=16,
                 mapping_layers=4, mapping_lr_mul=0.01, mixing_prob=0.9, w_avg_beta=0.995,
                 noise=True, demodulate=True, output="linear", device=None, dtype="float32"):
        super().__init__()
        if not 0 <= mixing_prob <= 1:
            raise ValueError(f"StyleGANGenerator: mixing_prob must be in [0, 1], got "
                             f"{mixing_prob}")
        if output not in OUTPUTS:
            raise ValueError(f"StyleGANGenerator: output must be one of {OUTPUTS}, got "
                             f"{output!r}")
        self.output = output
        levels = _size_plan(image_size)
        self.latent_dim, self.w_dim, self.image_size = latent_dim, w_dim, image_size
        self.channels, self.mixing_prob = channels, float(mixing_prob)
        self.num_ws = num_ws_for(image_size)
        kw = dict(device=device, dtype=dtype)
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, mapping_lr_mul,
                                      w_avg_beta, **kw)
        self.blocks, previous = [], None
        for level in range(2, levels + 1):
            resolution = 2 ** level
            out = channels_at(resolution, image_size, width)
            self.blocks.append(SynthesisBlock(previous, out, channels, w_dim, resolution,
                                              first_w=0 if level == 2 else 2 * level - 5,
                                              noise=noise, demodulate=demodulate, **kw))
            previous = out
        self._up_kernel = _bilinear_kernel(channels, device, dtype)

    def layers(self):
        """Every modulated layer in the order of synthesis (each has its w_index)."""
        return [layer for block in self.blocks
                for layer in (block.conv0, block.conv1, block.torgb) if layer is not None]

    @property
    def w_avg(self):
        return self.mapping.w_avg

    def truncate(self, w, psi):
        """w_avg + psi (w - w_avg) (psi = 1: w itself)."""
        if psi == 1:
            return w
        avg = ops.broadcast_to(ops.reshape(self.mapping.w_avg, (1, self.w_dim)), w.shape)
        return avg + (w - avg) * float(psi)

    def mix(self, w, w2, crossover):
        """The per-layer styles: w for indices < crossover, w2 from it on."""
        if not 0 <= crossover <= self.num_ws:
            raise ValueError(f"StyleGANGenerator: crossover must be in [0, {self.num_ws}], "
                             f"got {crossover}")
        return [w if i < crossover else w2 for i in range(self.num_ws)]

    def training_styles(self, z):
        """The styles of a training forward: w(z) at every layer, or with probability
        mixing_prob w(z) before a crossover drawn from 1 .. num_ws - 1 and w(z2) after it
        (z2 ~ N(0, I)); draws from NumPy's global RNG in this order: the coin, then the
        crossover and z2 when mixing."""
        w = self.mapping(z)
        if self.mixing_prob and np.random.rand() < self.mixing_prob:
            crossover = int(np.random.randint(1, self.num_ws))
            z2 = init.randn(*z.shape, device=z.device, dtype=z.dtype)
            return self.mix(w, self.mapping(z2, update_w_avg=False), crossover)
        return [w] * self.num_ws

    def synthesis(self, ws):
        """Images (N, channels, size, size) from num_ws styles, each (N, w_dim)."""
        if len(ws) != self.num_ws:
            raise ValueError(f"StyleGANGenerator: expected {self.num_ws} styles, got "
                             f"{len(ws)}")
        x = image = None
        for block in self.blocks:
            x, image = block(x, image, ws, self._up_kernel)
        if self.output == "tanh":
            image = ops.tanh(image)
        return ops.permute(image, _TO_NCHW)

    def forward(self, z, psi=1.0):
        if len(z.shape) != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"StyleGANGenerator: expected z of shape (N, {self.latent_dim}), "
                             f"got {z.shape}")
        if self.training:
            return self.synthesis(self.training_styles(z))
        w = self.truncate(self.mapping(z), psi)
        return self.synthesis([w] * self.num_ws)


class DiscriminatorBlock(nn.Module):
    """Residual: (conv 3x3, pool, conv 3x3) + (pool, 1x1 conv), times sqrt(1/2)."""

    def __init__(self, in_channels, out_channels, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.conv0 = EqualConv(in_channels, in_channels, 3, **kw)
        self.conv1 = EqualConv(in_channels, out_channels, 3, **kw)
        self.skip = EqualConv(in_channels, out_channels, 1, bias=False, activation=False, **kw)

    def forward(self, x):
        main = self.conv1(downsample_average(self.conv0(x)))
        return (self.skip(downsample_average(x)) + main) * math.sqrt(0.5)


class StyleGANDiscriminator(nn.Module):
    """D(x) -> (N,) logits: fromRGB, residual blocks down to 4x4, minibatch std, conv,
    dense, logit (module docstring)."""

    def __init__(self, channels=1, image_size=32, width=16, mbstd_group=4, device=None,
                 dtype="float32"):
        super().__init__()
        levels = _size_plan(image_size)
        self.channels, self.image_size = channels, image_size
        kw = dict(device=device, dtype=dtype)
        self.from_rgb = EqualConv(channels, channels_at(image_size, image_size, width), 1, **kw)
        self.blocks = [DiscriminatorBlock(channels_at(2 ** level, image_size, width),
                                          channels_at(2 ** (level - 1), image_size, width),
                                          **kw)
                       for level in range(levels, 2, -1)]
        last = channels_at(4, image_size, width)
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualConv(last + 1, last, 3, **kw)
        self.fc = EqualLinear(last * 16, last, activation=True, **kw)
        self.out = EqualLinear(last, 1, **kw)

    def forward(self, x):
        size = self.image_size
        if len(x.shape) != 4 or tuple(x.shape[1:]) != (self.channels, size, size):
            raise ValueError(f"StyleGANDiscriminator: expected images (N, {self.channels}, "
                             f"{size}, {size}), got shape {x.shape}")
        h = self.from_rgb(ops.permute(x, _TO_NHWC))
        for block in self.blocks:
            h = block(h)
        h = ops.permute(self.mbstd(ops.permute(h, _TO_NCHW)), _TO_NHWC)
        h = self.conv(h)
        h = self.fc(ops.reshape(h, (h.shape[0], -1)))
        return ops.reshape(self.out(h), (h.shape[0],))
