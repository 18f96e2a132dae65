"""Convolution layers on NCHW input, like PyTorch; weights in the course's (K, K, Cin, Cout).

The ops are NHWC. A layer permutes NCHW -> NHWC and back; both permutes are views, and
im2col copies the input once whatever its layout, so there is no layout round-trip copy.
Mapping to PyTorch weights: Conv/Conv2d weight.permute(3, 2, 0, 1); ConvTranspose2d
weight.permute(2, 3, 1, 0).
"""
import math

from .. import init, ops
from ..ops.conv import _pair
from .module import Module, Parameter

__all__ = ["Conv", "Conv2d", "ConvTranspose2d"]

_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _check_input(layer, x, channels):
    if len(x.shape) != 4 or x.shape[1] != channels:
        raise ValueError(f"{layer}: expected input (N, {channels}, H, W), got shape {x.shape}")


def _add_channel_bias(y_nhwc, bias):
    return y_nhwc + ops.broadcast_to(ops.reshape(bias, (1, 1, 1, bias.shape[0])), y_nhwc.shape)


def _forward_nchw(layer, x, conv_nhwc):
    """Check x, run `conv_nhwc` on its NHWC view, add the bias, and return the NCHW view."""
    _check_input(layer, x, layer.in_channels)
    y = conv_nhwc(ops.permute(x, _TO_NHWC))
    if layer.bias is not None:
        y = _add_channel_bias(y, layer.bias)
    return ops.permute(y, _TO_NCHW)


def _torch_style_parameters(weight_shape, out_channels, fan_in, bias, device, dtype):
    """(weight, bias or None) ~ U(+-1/sqrt(fan_in)), drawn in that order, as PyTorch does."""
    bound = 1.0 / math.sqrt(fan_in)
    weight = Parameter(init.rand(*weight_shape, low=-bound, high=bound, device=device,
                                 dtype=dtype, requires_grad=True))
    bias = Parameter(init.rand(out_channels, low=-bound, high=bound, device=device,
                               dtype=dtype, requires_grad=True)) if bias else None
    return weight, bias


class Conv(Module):
    """The course's Conv: NCHW in and out, padding K // 2, weight (K, K, Cin, Cout).

    weight ~ kaiming_uniform(Cin*K*K, Cout*K*K); bias (Cout,) ~ U(+-1/sqrt(Cin*K*K)).
    Tuple kernel_size / stride are reduced to their first element, as in the course.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=True,
                 device=None, dtype="float32"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _first(kernel_size), _first(stride)
        k = self.kernel_size
        self.padding = k // 2
        self.weight = Parameter(init.kaiming_uniform(
            in_channels * k * k, out_channels * k * k, shape=(k, k, in_channels, out_channels),
            device=device, dtype=dtype, requires_grad=True))
        self.bias = None
        if bias:
            bound = 1.0 / math.sqrt(in_channels * k * k)
            self.bias = Parameter(init.rand(out_channels, low=-bound, high=bound,
                                            device=device, dtype=dtype, requires_grad=True))

    def forward(self, x):
        return _forward_nchw(self, x, lambda x_nhwc: ops.conv(
            x_nhwc, self.weight, stride=self.stride, padding=self.padding))

    def __repr__(self):
        return (f"Conv({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride})")


class Conv2d(Module):
    """PyTorch's Conv2d signature and initialisation: U(+-1/sqrt(Cin*K*K)) for W and b."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=True, device=None, dtype="float32"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.dilation = padding, dilation
        kh, kw = _pair(kernel_size, "kernel_size", "Conv2d")
        self.weight, self.bias = _torch_style_parameters(
            (kh, kw, in_channels, out_channels), out_channels, in_channels * kh * kw, bias,
            device, dtype)

    def forward(self, x):
        return _forward_nchw(self, x, lambda x_nhwc: ops.conv(
            x_nhwc, self.weight, stride=self.stride, padding=self.padding,
            dilation=self.dilation))

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size="
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding})")


class ConvTranspose2d(Module):
    """PyTorch's ConvTranspose2d: (N, Cin, H, W) -> (N, Cout, OH, OW).

    OH = (H - 1) * stride - 2 * padding + dilation * (K - 1) + output_padding + 1.
    The weight is stored as the adjoint conv's (K, K, Cout, Cin); PyTorch's (Cin, Cout, K, K)
    is ours permuted (2, 3, 1, 0). Initialised like PyTorch: U(+-1/sqrt(Cout*K*K)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, bias=True, device=None, dtype="float32"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.output_padding, self.dilation = output_padding, dilation
        kh, kw = _pair(kernel_size, "kernel_size", "ConvTranspose2d")
        self.weight, self.bias = _torch_style_parameters(
            (kh, kw, out_channels, in_channels), out_channels, out_channels * kh * kw, bias,
            device, dtype)

    def forward(self, x):
        return _forward_nchw(self, x, lambda x_nhwc: ops.conv_transpose(
            x_nhwc, self.weight, stride=self.stride, padding=self.padding,
            output_padding=self.output_padding, dilation=self.dilation))

    def __repr__(self):
        return (f"ConvTranspose2d({self.in_channels}, {self.out_channels}, kernel_size="
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding})")
