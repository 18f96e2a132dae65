"""Convolution, transposed convolution and the weight gradient, as three ops.

Layout (the course's): activations NHWC, weights (KH, KW, Cin, Cout). `conv` is
cross-correlation: torch.conv2d on NCHW input with our weight permuted (3, 2, 0, 1).

Each forward is one GEMM: conv gathers the im2col matrix through a strided view of the padded
input; conv_transpose multiplies first and scatter-adds the columns back (col2im), looping
over the KH x KW kernel offsets only. Where the device has fused kernels (cuda(); cpu_numpy()
with the native module built) one kernel does the whole col2im, and on cpu_numpy() one the
whole im2col, padding included.
The three ops are each other's gradients, so every gradient is again a convolution and
double backward (gradient penalties) works:

    conv(x, W)               d/dx: conv_transpose(g, W)     d/dW: conv_weight_grad(x, g)
    conv_transpose(y, W)     d/dy: conv(g, W)               d/dW: conv_weight_grad(g, y)
    conv_weight_grad(x, g)   d/dx: conv_transpose(g, G)     d/dg: conv(x, G)

When no graph is recorded, gathers are shared: conv_transpose's two gradients, conv(g, W)
and conv_weight_grad(g, y), take one im2col(g), and conv's weight gradient reuses the
im2col(x) of its forward (kept on the op until its gradient runs, as PyTorch's unfused
slow_conv2d keeps its `finput`).
"""
import numbers

from ..autograd import Tensor, TensorOp, needs_grad, records_graph
from ..backend_selection import array_api, device_of

__all__ = ["Conv", "ConvTranspose", "ConvWeightGrad", "conv", "conv_transpose",
           "conv_weight_grad", "conv_output_size", "conv_transpose_output_size"]


def _pair(value, name, op="conv"):
    """An int (NumPy's included) or an (h, w) pair of ints, as an (h, w) tuple."""
    if isinstance(value, numbers.Integral):
        return (int(value), int(value))
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, numbers.Integral) for v in value)):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{op}: {name} must be an int or an (h, w) pair of ints, got {value!r}")


def conv_output_size(size, kernel, stride, padding, dilation):
    """Output length of a convolution: (size + 2p - d(k-1) - 1) // s + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation):
    """Output length of a transposed convolution (PyTorch's ConvTranspose2d formula)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


class _ConvGeometry:
    """stride, padding and dilation as (h, w) pairs, shared by the three ops."""

    def __init__(self, stride, padding, dilation):
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"conv: need stride >= 1, dilation >= 1 and padding >= 0, got "
                             f"stride={stride}, padding={padding}, dilation={dilation}")

    def im2col(self, x, kernel, out_size):
        """(N*OH*OW, KH*KW*C) patches of x (NHWC), gathered through one strided view."""
        cols = array_api.fused("im2col", x, kernel=kernel, stride=self.stride,
                               padding=self.padding, dilation=self.dilation,
                               out_size=out_size)  # one threaded pass on cpu_numpy()
        if cols is not None:
            return cols
        (ph, pw), (sh, sw), (dh, dw) = self.padding, self.stride, self.dilation
        if ph or pw:
            x = array_api.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        n, _, _, c = x.shape
        (kh, kw), (oh, ow) = kernel, out_size
        s_n, s_h, s_w, s_c = array_api.element_strides(x)
        patches = array_api.as_strided(x, (n, oh, ow, kh, kw, c),
                                       (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))
        return array_api.reshape(patches, (n * oh * ow, kh * kw * c))

    def col2im(self, cols, in_size, kernel, out_size):
        """Scatter-add (N, H, W, KH, KW, C) columns into the (N, OH, OW, C) output: the
        canvas they cover, cropped by the padding (a fused kernel writes that window alone,
        so no later op copies a strided crop)."""
        n, h, w, kh, kw, c = cols.shape
        (ph, pw), (sh, sw), (dh, dw) = self.padding, self.stride, self.dilation
        (oh, ow) = out_size
        canvas_h = max((h - 1) * sh + dh * (kh - 1) + 1, ph + oh)
        canvas_w = max((w - 1) * sw + dw * (kw - 1) + 1, pw + ow)
        if self._tiles_without_overlap(h, w, kernel, canvas_h, canvas_w):
            tiles = array_api.transpose(cols, (0, 1, 3, 2, 4, 5))
            canvas = array_api.reshape(tiles, (n, canvas_h, canvas_w, c))
            return canvas[:, ph:ph + oh, pw:pw + ow, :]
        window = array_api.fused("col2im", cols, canvas_shape=(n, canvas_h, canvas_w, c),
                                 origin=(ph, pw), out_size=(oh, ow), stride=(sh, sw),
                                 dilation=(dh, dw))  # one kernel
        if window is not None:
            return window
        canvas = array_api.full((n, canvas_h, canvas_w, c), 0, dtype=cols.dtype,
                                device=device_of(cols))
        for i in range(kh):
            for j in range(kw):
                target = (slice(None), slice(i * dh, i * dh + (h - 1) * sh + 1, sh),
                          slice(j * dw, j * dw + (w - 1) * sw + 1, sw), slice(None))
                array_api.add_to_slice(canvas, target, cols[:, :, :, i, j, :])
        return canvas[:, ph:ph + oh, pw:pw + ow, :]

    def _tiles_without_overlap(self, h, w, kernel, canvas_h, canvas_w):
        """True when each output pixel gets exactly one column entry: dilation 1 and each
        axis either one input position or stride == kernel (the 1x1 -> 7x7 first layer of
        DCGAN's generator, the 7x7 -> 1x1 last layer of its critic). Then col2im is one
        permuted copy instead of KH x KW scatter-adds."""
        (kh, kw), (sh, sw) = kernel, self.stride
        return (self.dilation == (1, 1) and (h == 1 or sh == kh) and (w == 1 or sw == kw)
                and canvas_h == h * kh and canvas_w == w * kw)

    def conv_out_size(self, in_size, kernel):
        """conv's (OH, OW) for an (H, W) input and a (KH, KW) kernel."""
        return tuple(conv_output_size(size, k, s, p, d) for size, k, s, p, d in
                     zip(in_size, kernel, self.stride, self.padding, self.dilation))

    def output_padding_for(self, in_size, kernel, out_size):
        """The output_padding that makes conv_transpose return exactly `in_size`."""
        return tuple(
            size - conv_transpose_output_size(o, k, s, p, 0, d)
            for size, o, k, s, p, d in zip(in_size, out_size, kernel, self.stride,
                                           self.padding, self.dilation))


def _conv_from_cols(cols, W, n, out_size):
    """conv's output (N, OH, OW, Cout) from its im2col matrix."""
    kh, kw, c_in, c_out = W.shape
    out = cols @ array_api.reshape(W, (kh * kw * c_in, c_out))
    return array_api.reshape(out, (n, *out_size, c_out))


def _weight_grad_from_cols(cols, g, kernel, c_in):
    """conv_weight_grad's (KH, KW, Cin, Cout) = cols^T @ g from x's im2col matrix."""
    n, oh, ow, c_out = g.shape
    grad = array_api.swapaxes(cols, 0, 1) @ array_api.reshape(g, (n * oh * ow, c_out))
    return array_api.reshape(grad, (*kernel, c_in, c_out))


def _check_4d(name, x, W):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected input with ndim 4 (N, H, W, C), got shape "
                         f"{x.shape}")
    if W.ndim != 4:
        raise ValueError(f"{name}: expected weight with ndim 4 (KH, KW, Cin, Cout), got "
                         f"shape {W.shape}")
    if 0 in x.shape:  # as_strided would fail with a message about strides
        raise ValueError(f"{name}: empty input of shape {x.shape} (an empty batch?)")


class Conv(TensorOp):
    """2-D cross-correlation of x (N, H, W, Cin) with W (KH, KW, Cin, Cout) -> NHWC."""

    def __init__(self, stride=1, padding=0, dilation=1):
        self.geometry = _ConvGeometry(stride, padding, dilation)

    def compute(self, x, W):
        _check_4d("conv", x, W)
        n, h, w, c = x.shape
        kh, kw, c_in, c_out = W.shape
        if c != c_in:
            raise ValueError(f"conv: input has {c} channels (shape {x.shape}) but the weight "
                             f"expects {c_in} (weight shape {W.shape})")
        g = self.geometry
        out_size = g.conv_out_size((h, w), (kh, kw))
        if min(out_size) < 1:
            raise ValueError(f"conv: kernel {(kh, kw)} (dilation {g.dilation}) does not fit "
                             f"input {(h, w)} with padding {g.padding}")
        cols = g.im2col(x, (kh, kw), out_size)
        self._forward_cols = (x, cols)  # for W's gradient; freed when it runs
        return _conv_from_cols(cols, W, n, out_size)

    def gradient(self, out_grad, node):
        x, W = node.inputs
        g = self.geometry
        kernel = W.shape[:2]
        saved, self._forward_cols = getattr(self, "_forward_cols", None), None
        grad_x = grad_W = None
        if needs_grad(x):
            output_padding = g.output_padding_for(x.shape[1:3], kernel, out_grad.shape[1:3])
            grad_x = conv_transpose(out_grad, W, g.stride, g.padding, output_padding,
                                    g.dilation)
        if needs_grad(W):
            if saved is not None and saved[0] is x.realize_cached_data() and \
                    not records_graph(out_grad, x, W):
                grad_W = Tensor.make_const(_weight_grad_from_cols(
                    saved[1], out_grad.realize_cached_data(), kernel, x.shape[3]))
            else:
                grad_W = conv_weight_grad(x, out_grad, kernel, g.stride, g.padding,
                                          g.dilation)
        return grad_x, grad_W


def conv(a, b, stride=1, padding=1, dilation=1):
    """Course conv: `a` NHWC, `b` (K, K, Cin, Cout). Note the default padding of 1."""
    return Conv(stride, padding, dilation)(a, b)


class ConvTranspose(TensorOp):
    """The adjoint of conv in x: y (N, H, W, Cout) with W (KH, KW, Cin, Cout) -> (N, OH, OW, Cin).

    OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1, as in
    PyTorch's ConvTranspose2d (whose weight (Cin_t, Cout_t, K, K) is ours permuted
    (2, 3, 1, 0)). output_padding must be smaller than stride.
    """

    def __init__(self, stride=1, padding=0, output_padding=0, dilation=1):
        self.geometry = _ConvGeometry(stride, padding, dilation)
        self.output_padding = _pair(output_padding, "output_padding")
        if any(op < 0 or op >= s for op, s in zip(self.output_padding,
                                                  self.geometry.stride)):
            raise ValueError(f"conv_transpose: output_padding {output_padding} must be in "
                             f"[0, stride) with stride {stride}")

    def compute(self, y, W):
        _check_4d("conv_transpose", y, W)
        n, h, w, c = y.shape
        kh, kw, c_in, c_out = W.shape
        if c != c_out:
            raise ValueError(f"conv_transpose: input has {c} channels (shape {y.shape}) but "
                             f"the weight expects {c_out} (weight shape {W.shape})")
        g = self.geometry
        out_size = tuple(conv_transpose_output_size(size, k, s, p, op, d) for size, k, s, p, op, d
                         in zip((h, w), (kh, kw), g.stride, g.padding, self.output_padding,
                                g.dilation))
        if min(out_size) < 1:
            raise ValueError(f"conv_transpose: padding {g.padding} leaves no output for "
                             f"input {(h, w)} and kernel {(kh, kw)}")
        weight = array_api.reshape(W, (kh * kw * c_in, c_out))
        cols = array_api.reshape(y, (n * h * w, c)) @ array_api.swapaxes(weight, 0, 1)
        cols = array_api.reshape(cols, (n, h, w, kh, kw, c_in))
        return g.col2im(cols, (h, w), (kh, kw), out_size)

    def gradient(self, out_grad, node):
        y, W = node.inputs
        g = self.geometry
        if needs_grad(y) and needs_grad(W) and not records_graph(out_grad, y, W):
            return self._gradients_sharing_cols(out_grad, y, W)
        grad_y = conv(out_grad, W, g.stride, g.padding, g.dilation) if needs_grad(y) \
            else None
        grad_W = conv_weight_grad(out_grad, y, W.shape[:2], g.stride, g.padding,
                                  g.dilation) if needs_grad(W) else None
        return grad_y, grad_W

    def _gradients_sharing_cols(self, out_grad, y, W):
        """Both gradients from one im2col(out_grad), with no graph recorded: the values
        conv(out_grad, W) and conv_weight_grad(out_grad, y) compute, bit for bit."""
        g, kernel = self.geometry, W.shape[:2]
        grad, y_data, weight = (t.realize_cached_data() for t in (out_grad, y, W))
        out_size = g.conv_out_size(grad.shape[1:3], kernel)
        cols = g.im2col(grad, kernel, out_size)
        return (Tensor.make_const(_conv_from_cols(cols, weight, grad.shape[0], out_size)),
                Tensor.make_const(_weight_grad_from_cols(cols, y_data, kernel, W.shape[2])))


def conv_transpose(a, b, stride=1, padding=0, output_padding=0, dilation=1):
    return ConvTranspose(stride, padding, output_padding, dilation)(a, b)


class ConvWeightGrad(TensorOp):
    """d conv(x, W) / dW contracted with g: (KH, KW, Cin, Cout) = im2col(x)^T @ g."""

    def __init__(self, kernel, stride=1, padding=0, dilation=1):
        self.kernel = _pair(kernel, "kernel")
        self.geometry = _ConvGeometry(stride, padding, dilation)

    def compute(self, x, g):
        cols = self.geometry.im2col(x, self.kernel, g.shape[1:3])
        return _weight_grad_from_cols(cols, g, self.kernel, x.shape[3])

    def gradient(self, out_grad, node):
        x, g = node.inputs
        geo = self.geometry
        grad_x = grad_g = None
        if needs_grad(x):
            output_padding = geo.output_padding_for(x.shape[1:3], self.kernel, g.shape[1:3])
            grad_x = conv_transpose(g, out_grad, geo.stride, geo.padding, output_padding,
                                    geo.dilation)
        if needs_grad(g):
            grad_g = conv(x, out_grad, geo.stride, geo.padding, geo.dilation)
        return grad_x, grad_g


def conv_weight_grad(x, g, kernel, stride=1, padding=0, dilation=1):
    return ConvWeightGrad(kernel, stride, padding, dilation)(x, g)
