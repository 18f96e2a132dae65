"""CycleGAN's models (Zhu et al. 2017, appendix 7.2), scaled down for 28x28 MNIST on a CPU.

ResnetGenerator is the paper's "c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3" with the
unit 64 as `width` and 9 as `n_blocks`; PatchDiscriminator is the 70x70 PatchGAN
"C64-C128-C256-C512" with the unit 64 as `width` and 3 as `n_layers`. Both use
InstanceNorm2d without affine parameters and biases on every conv, as the authors' code
(pytorch-CycleGAN-and-pix2pix, `networks.py`), and N(0, 0.02) weights (`dcgan_init`).

Code-to-paper names, as in the authors' code:
    G: A -> B  is the paper's G and their code's netG_A;   F: B -> A  is F and netG_B;
    D_B judges G's outputs against real B (the paper's D_Y, their netD_A), D_A judges F's.
"""
from needle import nn

from .init import dcgan_init

__all__ = ["ResnetGenerator", "PatchDiscriminator"]


def _check_image(model, x, channels):
    if len(x.shape) != 4 or x.shape[1] != channels or x.shape[2] % 4 or x.shape[3] % 4:
        raise ValueError(f"{type(model).__name__}: expected images (N, {channels}, H, W) "
                         f"with H and W multiples of 4, got shape {x.shape}")


class ResnetGenerator(nn.Module):
    """images (N, channels, H, W) in [-1, 1] -> images of the same shape, in [-1, 1].

    c7s1-w, d2w, d4w, R4w x n_blocks, u2w, uw, c7s1-channels, tanh, where ck is a
    conv-InstanceNorm-ReLU block with k filters (c7s1: 7x7, stride 1; d: 3x3, stride 2;
    u: 3x3 fractionally strided, stride 1/2) and Rk a residual block of two 3x3 convs.
    For 28x28 MNIST the feature maps go 28 -> 14 -> 7 -> 14 -> 28; H and W must be
    multiples of 4.

    Padding: the paper (and the authors' code) use reflection padding before the 7x7 and
    3x3 convs, to reduce artifacts at the borders. needle has no reflection-pad op yet
    (it would be a new op in needle/ops/shape.py: a gather with flipped indices, whose
    gradient scatter-adds back), so these convs zero-pad instead. On MNIST's constant -1
    background the difference is small.

        G = ResnetGenerator(channels=1, width=16, n_blocks=3)
        G(ndl.Tensor(np.zeros((2, 1, 28, 28), "float32"))).shape   # (2, 1, 28, 28)
    """

    def __init__(self, channels=1, width=16, n_blocks=3, device=None, dtype="float32"):
        super().__init__()
        self.channels, self.width, self.n_blocks = channels, width, n_blocks
        kw = dict(device=device, dtype=dtype)

        def block(conv, c_out):
            return [conv, nn.InstanceNorm2d(c_out, **kw), nn.ReLU()]

        w = width
        layers = block(nn.Conv2d(channels, w, 7, padding=3, **kw), w)           # c7s1-w
        # state size: (N, w, H, W)
        layers += block(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, **kw), 2 * w)  # d2w
        # state size: (N, 2w, H/2, W/2)
        layers += block(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, **kw), 4 * w)  # d4w
        # state size: (N, 4w, H/4, W/4)
        for _ in range(n_blocks):                                                # R4w
            layers.append(nn.Residual(nn.Sequential(
                nn.Conv2d(4 * w, 4 * w, 3, padding=1, **kw), nn.InstanceNorm2d(4 * w, **kw),
                nn.ReLU(),
                nn.Conv2d(4 * w, 4 * w, 3, padding=1, **kw), nn.InstanceNorm2d(4 * w, **kw))))
        # state size: (N, 4w, H/4, W/4)
        layers += block(nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1,
                                           output_padding=1, **kw), 2 * w)       # u2w
        # state size: (N, 2w, H/2, W/2)
        layers += block(nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1,
                                           output_padding=1, **kw), w)           # uw
        # state size: (N, w, H, W)
        layers += [nn.Conv2d(w, channels, 7, padding=3, **kw), nn.Tanh()]        # c7s1-channels
        # state size: (N, channels, H, W)
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x):
        _check_image(self, x, self.channels)
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """images (N, channels, H, W) -> a map of logits (N, 1, H', W'), one per patch.

    The PatchGAN of Isola et al. (2017) as CycleGAN uses it: Ck is a 4x4 conv with k filters,
    InstanceNorm (not on the first layer) and LeakyReLU(0.2). The paper's 70x70 PatchGAN is
    C64-C128-C256-C512 (n_layers=3, width=64; the first three stride 2, the last stride 1)
    followed by a stride-1 conv to one channel. The default here, n_layers=2 and width=16,
    is C16-C32-C64: for 28x28 input the map is 5x5 (28 -> 14 -> 7 -> 6 -> 5) and each
    logit sees a 34x34 receptive field, i.e. the whole digit seen from shifted positions.
    Logits feed LeastSquares (or any objective), which averages over the map.
    """

    def __init__(self, channels=1, width=16, n_layers=2, slope=0.2, device=None,
                 dtype="float32"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchDiscriminator: n_layers must be >= 1, got {n_layers}")
        self.channels, self.width, self.n_layers = channels, width, n_layers
        kw = dict(device=device, dtype=dtype)
        layers = [nn.Conv2d(channels, width, 4, stride=2, padding=1, **kw),
                  nn.LeakyReLU(slope)]                                     # C64, no norm
        # state size: (N, w, H/2, W/2)
        c_in = width
        for n in range(1, n_layers + 1):
            c_out = width * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1, **kw),
                       nn.InstanceNorm2d(c_out, **kw), nn.LeakyReLU(slope)]  # C128, C256, C512
            # state size: (N, c_out, s/2, s/2) with stride 2; (N, c_out, s-1, s-1) with 1
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, stride=1, padding=1, **kw))     # 1-channel logits
        # state size: (N, 1, H', W')
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x):
        if len(x.shape) != 4 or x.shape[1] != self.channels:
            raise ValueError(f"PatchDiscriminator: expected images (N, {self.channels}, H, W),"
                             f" got shape {x.shape}")
        return self.net(x)

    @staticmethod
    def output_size(size, n_layers=2):
        """H' for input H: the stride-2 convs halve it, the two stride-1 convs take 1 each."""
        for _ in range(n_layers):
            size = (size + 2 - 4) // 2 + 1
        return size - 2
