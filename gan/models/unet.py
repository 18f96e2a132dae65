"""pix2pix's models (Isola et al. 2017, appendix 6.1), scaled down for small images on a CPU.

UnetGenerator is the paper's U-Net "C64-C128-C256-C512-C512-C512-C512-C512" encoder and
"CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128" decoder (the decoder's counts include the
skip channels), with the unit 64 as `width` and its 8 levels as `depth`: Ck is a 4x4
stride-2 convolution with k filters, BatchNorm and an activation; CDk adds Dropout(0.5),
the generator's only noise (the paper drops z: "we provide noise only in the form of
dropout"). The encoder's activations are LeakyReLU(0.2) and the first layer has no norm;
the decoder's are ReLU; the skip from encoder level i is concatenated (channels) to the
input of the decoder layer that makes level i's size; the last layer maps to the output
channels and tanh. As the authors' code (pytorch-CycleGAN-and-pix2pix,
UnetSkipConnectionBlock), each layer's activation opens the next block and the innermost
encoder layer has no norm; convolutions feeding a BatchNorm have no bias (its shift
replaces it).

Any size H x W >= 2^depth works, odd ones too: each encoder layer maps a side s to s // 2,
each decoder layer's transposed convolution makes 2h + 1 (output_padding 1) and is cropped,
before its norm, to the side of the skip it meets (s is 2h or 2h + 1), the last one to the
input's side. At even sizes the crop drops the extra row and column only, so the result is
the standard 2h-sided layer's.

    G = UnetGenerator(in_channels=1, out_channels=1, width=16, depth=4)
    G(ndl.Tensor(np.zeros((2, 1, 27, 31), "float32"))).shape     # (2, 1, 27, 31)
    # encoder sides: 27x31 -> 13x15 -> 6x7 -> 3x3 -> 1x1; decoder: 3x3, 6x7, 13x15, 27x31

PairDiscriminator is the conditional PatchGAN D(x, y): gan.models.cyclegan's
PatchDiscriminator on the channel-concatenated pair (input first, then output), so each
logit judges whether a patch of y is a plausible translation of the same patch of x.
"""
from needle import nn, ops

from .cyclegan import PatchDiscriminator
from .init import dcgan_init

__all__ = ["UnetGenerator", "PairDiscriminator", "NORMS"]

NORMS = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}


def _crop(x, height, width):
    """The top-left height x width of an NCHW map (sides at least those)."""
    for axis, side in ((2, height), (3, width)):
        extra = x.shape[axis] - side
        if extra:
            x = ops.sections(x, [side, extra], axis)[0]
    return x


class _Up(nn.Module):
    """ReLU, the 2h + 1 transposed convolution, the crop to the side asked for, then the
    rest (norm and dropout, or tanh): statistics never see the cropped-off row."""

    def __init__(self, conv, after):
        super().__init__()
        self.relu, self.conv, self.after = nn.ReLU(), conv, nn.Sequential(*after)

    def forward(self, x, height, width):
        return self.after(_crop(self.conv(self.relu(x)), height, width))


class UnetGenerator(nn.Module):
    """images (N, in_channels, H, W) -> images (N, out_channels, H, W) in [-1, 1].

    width: the unit (paper: 64); level i has width * min(2^i, 8) channels. depth: encoder
    layers (paper: 8, for 256x256); H and W must be at least 2^depth. dropout_layers: the
    first (innermost) decoder layers with Dropout(0.5) (paper: 3), at most depth - 1.
    norm: "batch" (the paper's) or "instance". Dropout draws from NumPy's global RNG in
    training mode only; eval() makes G deterministic.
    """

    def __init__(self, in_channels=1, out_channels=1, width=16, depth=4, dropout_layers=3,
                 norm="batch", device=None, dtype="float32"):
        super().__init__()
        if depth < 2:
            raise ValueError(f"UnetGenerator: depth must be >= 2, got {depth}")
        if not 0 <= dropout_layers < depth:
            raise ValueError(f"UnetGenerator: dropout_layers must be in [0, {depth - 1}] for "
                             f"depth {depth}, got {dropout_layers}")
        if norm not in NORMS:
            raise ValueError(f"UnetGenerator: norm must be one of {sorted(NORMS)}, got {norm!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.width, self.depth, self.dropout_layers = width, depth, dropout_layers
        kw = dict(device=device, dtype=dtype)
        Norm, bias = NORMS[norm], norm != "batch"
        channels = [width * min(2 ** i, 8) for i in range(depth)]

        def down(i):
            c_in = in_channels if i == 0 else channels[i - 1]
            innermost = i == depth - 1
            conv = nn.Conv2d(c_in, channels[i], 4, stride=2, padding=1,
                             bias=bias or innermost or i == 0, **kw)
            if i == 0:
                return nn.Sequential(conv)                                    # C64, no norm
            layers = [nn.LeakyReLU(0.2), conv]
            return nn.Sequential(*layers) if innermost else \
                nn.Sequential(*layers, Norm(channels[i], **kw))                # C128 ... C512

        def up(i):  # the decoder layer that makes level i - 1's side (the input's for i = 0)
            c_in = channels[i] * (1 if i == depth - 1 else 2)  # the innermost has no skip
            c_out = out_channels if i == 0 else channels[i - 1]
            conv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, output_padding=1,
                                      bias=bias or i == 0, **kw)
            if i == 0:
                return _Up(conv, [nn.Tanh()])                                 # C128 -> tanh
            after = [Norm(c_out, **kw)]
            if depth - 1 - i < dropout_layers:
                after.append(nn.Dropout(0.5))                                 # CD512 ...
            return _Up(conv, after)

        self.encoder = [down(i) for i in range(depth)]
        # state sizes: (N, channels[i], H / 2^(i+1), W / 2^(i+1)), rounded down
        self.decoder = [up(i) for i in reversed(range(depth))]
        # state sizes: the skips' in reverse, then (N, out_channels, H, W)
        dcgan_init(self)

    @property
    def last_layer(self):
        """The last convolution (the one before tanh): where an adaptive loss weight
        compares the gradients of the reconstruction and adversarial terms."""
        return self.decoder[-1].conv

    def encode(self, x):
        """The encoder's feature maps, outermost first (the skips, then the bottleneck)."""
        if len(x.shape) != 4 or x.shape[1] != self.in_channels \
                or min(x.shape[2:]) < 2 ** self.depth:
            raise ValueError(f"UnetGenerator: expected images (N, {self.in_channels}, H, W) "
                             f"with H, W >= {2 ** self.depth} (depth {self.depth}), got shape "
                             f"{x.shape}")
        features = []
        for layer in self.encoder:
            x = layer(x)
            features.append(x)
        return features

    def decode(self, features, height, width):
        """The decoder on encode()'s maps; its output is height x width."""
        *skips, h = features
        for layer in self.decoder[:-1]:
            skip = skips.pop()
            h = ops.concatenate([skip, layer(h, *skip.shape[2:])], axis=1)  # skip first
        return self.decoder[-1](h, height, width)

    def forward(self, x):
        return self.decode(self.encode(x), *x.shape[2:])


class PairDiscriminator(PatchDiscriminator):
    """D(y, x): PatchGAN logits (N, 1, H', W') for the pair (input x, output y), judged
    on their channel concatenation [x, y] (gan.Adversarial calls D(images, cond) with the
    images judged first and the condition second)."""

    def __init__(self, in_channels=1, out_channels=1, width=16, n_layers=2, slope=0.2,
                 device=None, dtype="float32"):
        super().__init__(in_channels + out_channels, width, n_layers, slope, device=device,
                         dtype=dtype)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, y, x):
        if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[1] != self.in_channels \
                or y.shape[1] != self.out_channels or x.shape[0] != y.shape[0] \
                or x.shape[2:] != y.shape[2:]:
            raise ValueError(f"PairDiscriminator: expected an output (N, {self.out_channels},"
                             f" H, W) and its input (N, {self.in_channels}, H, W), got shapes "
                             f"{y.shape} and {x.shape}")
        return super().forward(ops.concatenate([x, y], axis=1))
