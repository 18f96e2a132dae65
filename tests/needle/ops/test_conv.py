"""conv, conv_transpose and conv_weight_grad: forward and gradients against a slow NumPy
reference written here (loops over kernel offsets, by the definition), against PyTorch when
it is installed, and numeric first and second derivative checks in float64."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.gradcheck import gradcheck, gradgradcheck


def pair(value):
    """An int or an (h, w) pair, as (h, w)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def reference_conv(x, W, stride, padding, dilation):
    """out[n, h, w, co] = sum x_pad[n, h*sh + i*dh, w*sw + j*dw, ci] * W[i, j, ci, co]."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, height, width, _ = x.shape
    kh, kw, _, c_out = W.shape
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    oh = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, oh, ow, c_out))
    for i in range(kh):
        for j in range(kw):
            window = x[:, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                       j * dw:j * dw + (ow - 1) * sw + 1:sw, :]
            out += np.einsum("nhwc,cd->nhwd", window, W[i, j])
    return out


def reference_conv_transpose(y, W, stride, padding, output_padding, dilation):
    """Scatter y[n, h, w, co] * W[i, j, ci, co] to (h*sh + i*dh - ph, w*sw + j*dw - pw).

    stride, padding, output_padding and dilation are ints or (rows, cols) pairs.
    """
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    op_h, op_w = pair(output_padding)
    n, height, width, _ = y.shape
    kh, kw, c_in, _ = W.shape
    oh = (height - 1) * sh - 2 * ph + dh * (kh - 1) + op_h + 1
    ow = (width - 1) * sw - 2 * pw + dw * (kw - 1) + op_w + 1
    size_h = max((height - 1) * sh + dh * (kh - 1) + 1, ph + oh)
    size_w = max((width - 1) * sw + dw * (kw - 1) + 1, pw + ow)
    canvas = np.zeros((n, size_h, size_w, c_in))
    for i in range(kh):
        for j in range(kw):
            canvas[:, i * dh:i * dh + (height - 1) * sh + 1:sh,
                   j * dw:j * dw + (width - 1) * sw + 1:sw, :] += \
                np.einsum("nhwd,cd->nhwc", y, W[i, j])
    return canvas[:, ph:ph + oh, pw:pw + ow, :]


def int_or_pair(values):
    """One int for both axes, or an (h, w) pair drawn axis by axis."""
    return st.one_of(values, st.tuples(values, values))


@st.composite
def conv_cases(draw):
    """(N, H, W, Cin, Cout, (KH, KW), stride, padding, dilation), output at least 1x1.

    Kernels are rectangular as often as square; stride, padding and dilation are each an int
    or an (h, w) pair, passed to the ops as drawn."""
    kernel = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    dilation = draw(int_or_pair(st.integers(1, 2)))
    padding = draw(int_or_pair(st.integers(0, 2)))
    stride = draw(int_or_pair(st.integers(1, 3)))
    height, width = (draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 9)) for k, d, p in
                     zip(kernel, pair(dilation), pair(padding)))
    return (draw(st.integers(1, 3)), height, width, draw(st.integers(1, 4)),
            draw(st.integers(1, 4)), kernel, stride, padding, dilation)


def output_paddings(stride):
    """An output_padding below the stride on each axis, an int when the stride is one."""
    if isinstance(stride, int):
        return st.integers(0, stride - 1)
    return st.tuples(*(st.integers(0, s - 1) for s in stride))


def conv_transpose_size(size, case, output_padding):
    """conv_transpose's (OH, OW) for input (H, W) = size, by PyTorch's formula."""
    _, _, _, _, _, kernel, stride, padding, dilation = case
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, op, d in zip(
        size, kernel, pair(stride), pair(padding), pair(output_padding), pair(dilation)))


def tensor(array, device, requires_grad=True):
    return ndl.Tensor(array, device=device, dtype=str(array.dtype), requires_grad=requires_grad)


@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_forward_and_grads_match_reference(case, seed, device):
    n, h, w, c_in, c_out, (kh, kw), stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal((n, h, w, c_in)), rng.standard_normal((kh, kw, c_in, c_out))
    X, Wt = tensor(x, device), tensor(W, device)
    out = ndl.conv(X, Wt, stride=stride, padding=padding, dilation=dilation)
    expected = reference_conv(x, W, stride, padding, dilation)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(expected.shape)
    out.backward(tensor(g, device, requires_grad=False))
    # d<g, conv(x, W)>/dx is the transposed conv of g (sized back to x by output_padding);
    # d/dW gathers x's patches against g.
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    oh, ow = expected.shape[1:3]
    op_h = h + 2 * ph - dh * (kh - 1) - 1 - (oh - 1) * sh
    op_w = w + 2 * pw - dw * (kw - 1) - 1 - (ow - 1) * sw
    grad_x = reference_conv_transpose(g, W, stride, padding, (op_h, op_w), dilation)
    np.testing.assert_allclose(X.grad.numpy(), grad_x, rtol=1e-9, atol=1e-9)
    x_pad = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    grad_W = np.stack([np.stack([np.einsum(
        "nhwc,nhwd->cd", x_pad[:, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                               j * dw:j * dw + (ow - 1) * sw + 1:sw], g)
        for j in range(kw)]) for i in range(kh)])
    np.testing.assert_allclose(Wt.grad.numpy(), grad_W, rtol=1e-9, atol=1e-9)


@given(case=conv_cases(), seed=st.integers(0, 2 ** 16), data=st.data())
def test_conv_transpose_forward_matches_reference(case, seed, data, device):
    n, h, w, c_in, c_out, kernel, stride, padding, dilation = case
    output_padding = data.draw(output_paddings(stride))
    rng = np.random.default_rng(seed)
    y, W = rng.standard_normal((n, h, w, c_out)), rng.standard_normal((*kernel, c_in, c_out))
    expected = reference_conv_transpose(y, W, stride, padding, output_padding, dilation)
    if min(expected.shape[1:3]) < 1:
        with pytest.raises(ValueError, match="conv_transpose"):
            ndl.conv_transpose(tensor(y, device), tensor(W, device), stride, padding,
                               output_padding, dilation)
        return
    out = ndl.conv_transpose(tensor(y, device), tensor(W, device), stride, padding,
                             output_padding, dilation)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


# col2im's one-copy path (no two kernel offsets meet) and its neighbours that must not take it:
# (H, W, K, stride, padding, output_padding, dilation), whether the one-copy path applies;
# K and stride are ints or (h, w) pairs.
NO_OVERLAP_GEOMETRIES = [((1, 1, 7, 1, 0, 0, 1), True), ((1, 1, 4, 2, 1, 0, 1), True),
                         ((3, 2, 2, 2, 0, 0, 1), True), ((1, 3, 3, 3, 1, 0, 1), True),
                         ((3, 2, (2, 3), (2, 3), 0, 0, 1), True),
                         ((1, 4, (5, 2), (1, 2), 0, 0, 1), True),
                         ((3, 3, 3, 3, 1, 2, 1), False), ((1, 1, 3, 2, 0, 1, 1), False),
                         ((2, 2, 2, 2, 0, 0, 2), False), ((2, 2, 3, 2, 0, 0, 1), False),
                         ((3, 2, (2, 3), (2, 2), 0, 0, 1), False)]


@pytest.mark.parametrize("geometry, one_copy", NO_OVERLAP_GEOMETRIES)
def test_conv_transpose_without_overlapping_offsets_matches_reference(geometry, one_copy,
                                                                     device, monkeypatch):
    from needle.ops.conv import _ConvGeometry
    decided = []
    check = _ConvGeometry._tiles_without_overlap
    monkeypatch.setattr(_ConvGeometry, "_tiles_without_overlap",
                        lambda self, *args: decided.append(check(self, *args)) or decided[-1])
    h, w, k, stride, padding, output_padding, dilation = geometry
    rng = np.random.default_rng(h * 100 + w * 10 + pair(k)[1])
    y, W = rng.standard_normal((2, h, w, 3)), rng.standard_normal((*pair(k), 2, 3))
    out = ndl.conv_transpose(tensor(y, device), tensor(W, device), stride, padding,
                             output_padding, dilation)
    expected = reference_conv_transpose(y, W, stride, padding, output_padding, dilation)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    assert decided == [one_copy]


@settings(max_examples=8)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_gradcheck(case, seed, device):
    n, h, w, c_in, c_out, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    X = tensor(rng.standard_normal((n, h, w, c_in)), device)
    W = tensor(rng.standard_normal((*kernel, c_in, c_out)), device)
    gradcheck(lambda x, W: ndl.conv(x, W, stride, padding, dilation), X, W)


@settings(max_examples=8)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16), data=st.data())
def test_conv_transpose_gradcheck(case, seed, data, device):
    n, h, w, c_in, c_out, kernel, stride, padding, dilation = case
    output_padding = data.draw(output_paddings(stride))
    if min(conv_transpose_size((h, w), case, output_padding)) < 1:
        return
    rng = np.random.default_rng(seed)
    Y = tensor(rng.standard_normal((n, h, w, c_out)), device)
    W = tensor(rng.standard_normal((*kernel, c_in, c_out)), device)
    gradcheck(lambda y, W: ndl.conv_transpose(y, W, stride, padding, output_padding,
                                              dilation), Y, W)


SECOND_ORDER_CASES = [  # (N, H, W, Cin, Cout, (KH, KW), stride, padding, dilation)
    (2, 5, 5, 2, 3, (3, 3), 1, 1, 1),
    (1, 6, 7, 2, 2, (4, 4), 2, 1, 1),
    (2, 7, 6, 1, 2, (3, 3), 2, 0, 2),
    (1, 7, 6, 2, 2, (3, 2), (2, 1), (1, 0), (1, 2)),
]


def _output_padding_below(stride):
    return tuple(s - 1 for s in pair(stride))


@pytest.mark.parametrize("case", SECOND_ORDER_CASES)
def test_conv_gradgradcheck(case, device):
    n, h, w, c_in, c_out, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(1)
    X = tensor(rng.standard_normal((n, h, w, c_in)), device)
    W = tensor(rng.standard_normal((*kernel, c_in, c_out)), device)
    gradgradcheck(lambda x, W: ndl.conv(x, W, stride, padding, dilation), X, W)


@pytest.mark.parametrize("case", SECOND_ORDER_CASES)
def test_conv_transpose_gradgradcheck(case, device):
    n, h, w, c_in, c_out, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(2)
    Y = tensor(rng.standard_normal((n, h, w, c_out)), device)
    W = tensor(rng.standard_normal((*kernel, c_in, c_out)), device)
    gradgradcheck(lambda y, W: ndl.conv_transpose(y, W, stride, padding,
                                                  _output_padding_below(stride), dilation),
                  Y, W)


def test_leaky_relu_conv_stack_gradgradcheck(device):
    """A two-layer conv discriminator, what a gradient penalty differentiates twice."""
    rng = np.random.default_rng(3)
    X = tensor(rng.standard_normal((2, 6, 6, 1)), device)
    W1 = tensor(rng.standard_normal((3, 3, 1, 3)) * 0.5, device)
    W2 = tensor(rng.standard_normal((3, 3, 3, 2)) * 0.5, device)

    def critic(x, W1, W2):
        hidden = ndl.leaky_relu(ndl.conv(x, W1, stride=2, padding=1), 0.2)
        return ndl.conv(ndl.tanh(hidden), W2, stride=1, padding=1)

    gradgradcheck(critic, X, W1, W2)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), ((3, 2), (2, 1), (1, 0))])
def test_conv_weight_grad_gradgradcheck(kernel, stride, padding, device):
    rng = np.random.default_rng(4)
    X = tensor(rng.standard_normal((2, 5, 5, 2)), device)
    out_size = [(5 + 2 * p - k) // s + 1 for k, s, p in
                zip(pair(kernel), pair(stride), pair(padding))]
    G = tensor(rng.standard_normal((2, *out_size, 3)), device)
    assert ndl.conv_weight_grad(X, G, kernel, stride, padding).shape == (*pair(kernel), 2, 3)
    gradcheck(lambda x, g: ndl.conv_weight_grad(x, g, kernel, stride, padding), X, G)
    gradgradcheck(lambda x, g: ndl.conv_weight_grad(x, g, kernel, stride, padding), X, G)


# ---- PyTorch as the oracle: NCHW, torch weight (Cout, Cin, KH, KW) = ours (3, 2, 0, 1) -------
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _torch_weight(W):
    return np.ascontiguousarray(W.transpose(3, 2, 0, 1))


def _nhwc(a):
    return a.transpose(0, 2, 3, 1)


@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_matches_torch(torch, case, seed):
    n, h, w, c_in, c_out, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal((n, h, w, c_in)), rng.standard_normal((*kernel, c_in, c_out))
    X, Wt = tensor(x, ndl.default_device()), tensor(W, ndl.default_device())
    out = ndl.conv(X, Wt, stride=stride, padding=padding, dilation=dilation)
    tx = torch.tensor(_nchw(x), requires_grad=True)
    tw = torch.tensor(_torch_weight(W), requires_grad=True)
    t_out = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=padding,
                                       dilation=dilation)
    np.testing.assert_allclose(out.numpy(), _nhwc(t_out.detach().numpy()), rtol=1e-10,
                               atol=1e-10)
    g = rng.standard_normal(t_out.shape)
    t_out.backward(torch.tensor(g))
    out.backward(tensor(_nhwc(g), ndl.default_device(), requires_grad=False))
    np.testing.assert_allclose(X.grad.numpy(), _nhwc(tx.grad.numpy()), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(Wt.grad.numpy(), tw.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-9, atol=1e-9)


@given(case=conv_cases(), seed=st.integers(0, 2 ** 16), data=st.data())
def test_conv_transpose_matches_torch(torch, case, seed, data):
    n, h, w, c_in, c_out, kernel, stride, padding, dilation = case
    output_padding = data.draw(output_paddings(stride))
    if min(conv_transpose_size((h, w), case, output_padding)) < 1:
        return
    rng = np.random.default_rng(seed)
    y, W = rng.standard_normal((n, h, w, c_out)), rng.standard_normal((*kernel, c_in, c_out))
    Y, Wt = tensor(y, ndl.default_device()), tensor(W, ndl.default_device())
    out = ndl.conv_transpose(Y, Wt, stride=stride, padding=padding,
                             output_padding=output_padding, dilation=dilation)
    ty = torch.tensor(_nchw(y), requires_grad=True)
    tw = torch.tensor(_torch_weight(W), requires_grad=True)
    t_out = torch.nn.functional.conv_transpose2d(ty, tw, stride=stride, padding=padding,
                                                 output_padding=output_padding,
                                                 dilation=dilation)
    np.testing.assert_allclose(out.numpy(), _nhwc(t_out.detach().numpy()), rtol=1e-10,
                               atol=1e-10)
    g = rng.standard_normal(t_out.shape)
    t_out.backward(torch.tensor(g))
    out.backward(tensor(_nhwc(g), ndl.default_device(), requires_grad=False))
    np.testing.assert_allclose(Y.grad.numpy(), _nhwc(ty.grad.numpy()), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(Wt.grad.numpy(), tw.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-9, atol=1e-9)


def test_course_conv_default_padding_is_one():
    x = ndl.Tensor(np.ones((1, 4, 4, 1)))
    w = ndl.Tensor(np.ones((3, 3, 1, 1)))
    assert ndl.conv(x, w).shape == (1, 4, 4, 1)
    assert ndl.ops.Conv()(x, w).shape == (1, 2, 2, 1)


@pytest.mark.parametrize("x_shape, w_shape, message", [
    ((1, 5, 5, 3), (3, 3, 2, 4), r"conv: input has 3 channels .* expects 2"),
    ((5, 5, 3), (3, 3, 3, 4), r"conv: expected input with ndim 4"),
    ((1, 2, 2, 1), (3, 3, 1, 1), r"conv: kernel \(3, 3\) .* does not fit"),
])
def test_conv_bad_input_names_op_and_shapes(x_shape, w_shape, message):
    with pytest.raises(ValueError, match=message):
        ndl.ops.Conv()(ndl.Tensor(np.ones(x_shape)), ndl.Tensor(np.ones(w_shape)))


def test_conv_transpose_rejects_output_padding_not_below_stride():
    with pytest.raises(ValueError, match="output_padding"):
        ndl.ops.ConvTranspose(stride=2, output_padding=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"stride": (1, 2, 3)}, r"conv: stride must be an int or an \(h, w\) pair of ints, got "
                            r"\(1, 2, 3\)"),
    ({"padding": (1,)}, r"conv: padding must be .* got \(1,\)"),
    ({"dilation": (1.0, 2.0)}, r"conv: dilation must be .* got \(1.0, 2.0\)"),
])
def test_conv_names_an_argument_that_is_neither_int_nor_pair(kwargs, message):
    x, W = ndl.Tensor(np.ones((1, 5, 5, 1))), ndl.Tensor(np.ones((3, 2, 1, 1)))
    with pytest.raises(ValueError, match=message):
        ndl.conv(x, W, **kwargs)


def test_conv_takes_numpy_integers_as_ints():
    x, W = ndl.Tensor(np.ones((1, 5, 5, 1))), ndl.Tensor(np.ones((3, 2, 1, 1)))
    out = ndl.conv(x, W, stride=np.int64(2), padding=(np.int32(1), 0))
    assert out.shape == (1, 3, 2, 1)


@pytest.mark.parametrize("geometry", [(2, 2, 1, 4), (1, 0, 2, 3), (3, 1, 1, 3)],
                         ids=["dcgan", "dilated", "stride3"])
def test_conv_transpose_gradients_share_one_gather(monkeypatch, device, geometry):
    """With no graph recorded, conv_transpose's two gradients come from one im2col of the
    output gradient, with the bits of the two ops (conv, conv_weight_grad) a recorded
    graph builds."""
    from needle.ops.conv import _ConvGeometry
    stride, padding, dilation, k = geometry
    rng = np.random.default_rng(4)
    y_host = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    w_host = rng.standard_normal((k, k, 2, 3)).astype(np.float32)
    gathers = []
    original = _ConvGeometry.im2col
    monkeypatch.setattr(_ConvGeometry, "im2col",
                        lambda self, *a: gathers.append(1) or original(self, *a))

    out_shape = reference_conv_transpose(y_host, w_host, stride, padding, 0, dilation).shape
    seed = np.linspace(-1, 1, int(np.prod(out_shape)), dtype=np.float32).reshape(out_shape)

    def gradients(create_graph):
        y = ndl.Tensor(y_host, device=device, requires_grad=True)
        W = ndl.Tensor(w_host, device=device, requires_grad=True)
        out = ndl.conv_transpose(y, W, stride, padding, 0, dilation)
        out.backward(ndl.Tensor(seed, device=device), create_graph=create_graph)
        return y.grad.numpy(), W.grad.numpy()

    shared = gradients(False)
    assert len(gathers) == 1
    del gathers[:]
    separate = gradients(True)
    assert len(gathers) == 2
    for got, want in zip(shared, separate):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    # d/dy of conv_transpose(y, W) . seed is conv(seed, W), by the definition
    want_y = reference_conv(seed.astype(np.float64), w_host.astype(np.float64), stride,
                            padding, dilation)
    np.testing.assert_allclose(shared[0], want_y, rtol=1e-5, atol=1e-5)


def test_conv_weight_gradient_reuses_the_forward_gather(monkeypatch, device):
    """With no graph recorded, conv's weight gradient multiplies the im2col(x) its forward
    gathered (one gather per conv instead of two), with the recomputed path's bits, and the
    op lets go of it once the gradient ran."""
    from needle.ops.conv import _ConvGeometry
    rng = np.random.default_rng(5)
    x_host = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    w_host = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    gathers = []
    original = _ConvGeometry.im2col
    monkeypatch.setattr(_ConvGeometry, "im2col",
                        lambda self, *a: gathers.append(1) or original(self, *a))

    def gradients(create_graph):
        x = ndl.Tensor(x_host, device=device, requires_grad=True)
        W = ndl.Tensor(w_host, device=device, requires_grad=True)
        out = ndl.conv(x, W, stride=2, padding=1)
        seed = np.linspace(-1, 1, int(np.prod(out.shape)), dtype=np.float32)
        out.backward(ndl.Tensor(seed.reshape(out.shape), device=device),
                     create_graph=create_graph)
        assert out.op._forward_cols is None
        return x.grad.numpy(), W.grad.numpy(), seed.reshape(out.shape)

    *shared, seed = gradients(False)
    assert len(gathers) == 1
    del gathers[:]
    *separate, _ = gradients(True)
    assert len(gathers) == 2
    for got, want in zip(shared, separate):
        np.testing.assert_array_equal(got, want)
    # dW[i, j, ci, co] = sum x_pad[n, h*s + i, w*s + j, ci] * seed[n, h, w, co]
    padded = np.pad(x_host.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    oh, ow = seed.shape[1:3]
    want_w = np.stack([np.stack([np.einsum("nhwc,nhwd->cd",
                                           padded[:, i:i + 2 * oh - 1:2, j:j + 2 * ow - 1:2],
                                           seed) for j in range(3)]) for i in range(3)])
    np.testing.assert_allclose(shared[1], want_w, rtol=1e-5, atol=1e-5)
