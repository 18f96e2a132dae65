"""conv, conv_transpose and conv_weight_grad: forward and gradients against a slow NumPy
reference written here (loops over kernel offsets, by the definition), against PyTorch when
it is installed, and numeric first and second derivative checks in float64."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.gradcheck import gradcheck, gradgradcheck


def reference_conv(x, W, stride, padding, dilation):
    """out[n, h, w, co] = sum x_pad[n, h*s + i*d, w*s + j*d, ci] * W[i, j, ci, co]."""
    n, height, width, _ = x.shape
    kh, kw, _, c_out = W.shape
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    oh = (height + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (width + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, oh, ow, c_out))
    for i in range(kh):
        for j in range(kw):
            window = x[:, i * dilation:i * dilation + (oh - 1) * stride + 1:stride,
                       j * dilation:j * dilation + (ow - 1) * stride + 1:stride, :]
            out += np.einsum("nhwc,cd->nhwd", window, W[i, j])
    return out


def reference_conv_transpose(y, W, stride, padding, output_padding, dilation):
    """Scatter y[n, h, w, co] * W[i, j, ci, co] to (h*s + i*d - p, w*s + j*d - p).

    `output_padding` is an int or an (rows, cols) pair.
    """
    n, height, width, _ = y.shape
    kh, kw, c_in, _ = W.shape
    op_h, op_w = (output_padding, output_padding) if np.isscalar(output_padding) \
        else output_padding
    oh = (height - 1) * stride - 2 * padding + dilation * (kh - 1) + op_h + 1
    ow = (width - 1) * stride - 2 * padding + dilation * (kw - 1) + op_w + 1
    size_h = max((height - 1) * stride + dilation * (kh - 1) + 1, padding + oh)
    size_w = max((width - 1) * stride + dilation * (kw - 1) + 1, padding + ow)
    canvas = np.zeros((n, size_h, size_w, c_in))
    for i in range(kh):
        for j in range(kw):
            canvas[:, i * dilation:i * dilation + (height - 1) * stride + 1:stride,
                   j * dilation:j * dilation + (width - 1) * stride + 1:stride, :] += \
                np.einsum("nhwd,cd->nhwc", y, W[i, j])
    return canvas[:, padding:padding + oh, padding:padding + ow, :]


@st.composite
def conv_cases(draw):
    """(N, H, W, Cin, Cout, K, stride, padding, dilation) with an output of at least 1x1."""
    kernel = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.integers(0, 2))
    stride = draw(st.integers(1, 3))
    span = dilation * (kernel - 1) + 1
    height = draw(st.integers(max(1, span - 2 * padding), 9))
    width = draw(st.integers(max(1, span - 2 * padding), 9))
    return (draw(st.integers(1, 3)), height, width, draw(st.integers(1, 4)),
            draw(st.integers(1, 4)), kernel, stride, padding, dilation)


def tensor(array, device, requires_grad=True):
    return ndl.Tensor(array, device=device, dtype=str(array.dtype), requires_grad=requires_grad)


@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_forward_and_grads_match_reference(case, seed, device):
    n, h, w, c_in, c_out, k, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal((n, h, w, c_in)), rng.standard_normal((k, k, c_in, c_out))
    X, Wt = tensor(x, device), tensor(W, device)
    out = ndl.conv(X, Wt, stride=stride, padding=padding, dilation=dilation)
    expected = reference_conv(x, W, stride, padding, dilation)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(expected.shape)
    out.backward(tensor(g, device, requires_grad=False))
    # d<g, conv(x, W)>/dx is the transposed conv of g (sized back to x by output_padding);
    # d/dW gathers x's patches against g.
    op_h = h + 2 * padding - dilation * (k - 1) - 1 - (expected.shape[1] - 1) * stride
    op_w = w + 2 * padding - dilation * (k - 1) - 1 - (expected.shape[2] - 1) * stride
    grad_x = reference_conv_transpose(g, W, stride, padding, (op_h, op_w), dilation)
    np.testing.assert_allclose(X.grad.numpy(), grad_x, rtol=1e-9, atol=1e-9)
    x_pad = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    oh, ow = expected.shape[1:3]
    grad_W = np.stack([np.stack([np.einsum(
        "nhwc,nhwd->cd", x_pad[:, i * dilation:i * dilation + (oh - 1) * stride + 1:stride,
                               j * dilation:j * dilation + (ow - 1) * stride + 1:stride], g)
        for j in range(k)]) for i in range(k)])
    np.testing.assert_allclose(Wt.grad.numpy(), grad_W, rtol=1e-9, atol=1e-9)


@given(case=conv_cases(), seed=st.integers(0, 2 ** 16), data=st.data())
def test_conv_transpose_forward_matches_reference(case, seed, data, device):
    n, h, w, c_in, c_out, k, stride, padding, dilation = case
    output_padding = data.draw(st.integers(0, stride - 1))
    rng = np.random.default_rng(seed)
    y, W = rng.standard_normal((n, h, w, c_out)), rng.standard_normal((k, k, c_in, c_out))
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
# (H, W, K, stride, padding, output_padding, dilation), whether the one-copy path applies.
NO_OVERLAP_GEOMETRIES = [((1, 1, 7, 1, 0, 0, 1), True), ((1, 1, 4, 2, 1, 0, 1), True),
                         ((3, 2, 2, 2, 0, 0, 1), True), ((1, 3, 3, 3, 1, 0, 1), True),
                         ((3, 3, 3, 3, 1, 2, 1), False), ((1, 1, 3, 2, 0, 1, 1), False),
                         ((2, 2, 2, 2, 0, 0, 2), False), ((2, 2, 3, 2, 0, 0, 1), False)]


@pytest.mark.parametrize("geometry, one_copy", NO_OVERLAP_GEOMETRIES)
def test_conv_transpose_without_overlapping_offsets_matches_reference(geometry, one_copy,
                                                                     device, monkeypatch):
    from needle.ops.conv import _ConvGeometry
    decided = []
    check = _ConvGeometry._tiles_without_overlap
    monkeypatch.setattr(_ConvGeometry, "_tiles_without_overlap",
                        lambda self, *args: decided.append(check(self, *args)) or decided[-1])
    h, w, k, stride, padding, output_padding, dilation = geometry
    rng = np.random.default_rng(h * 100 + k)
    y, W = rng.standard_normal((2, h, w, 3)), rng.standard_normal((k, k, 2, 3))
    out = ndl.conv_transpose(tensor(y, device), tensor(W, device), stride, padding,
                             output_padding, dilation)
    expected = reference_conv_transpose(y, W, stride, padding, output_padding, dilation)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    assert decided == [one_copy]


@settings(max_examples=8)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_gradcheck(case, seed, device):
    n, h, w, c_in, c_out, k, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    X = tensor(rng.standard_normal((n, h, w, c_in)), device)
    W = tensor(rng.standard_normal((k, k, c_in, c_out)), device)
    gradcheck(lambda x, W: ndl.conv(x, W, stride, padding, dilation), X, W)


@settings(max_examples=8)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16), data=st.data())
def test_conv_transpose_gradcheck(case, seed, data, device):
    n, h, w, c_in, c_out, k, stride, padding, dilation = case
    output_padding = data.draw(st.integers(0, stride - 1))
    out_h = (h - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    out_w = (w - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    if min(out_h, out_w) < 1:
        return
    rng = np.random.default_rng(seed)
    Y = tensor(rng.standard_normal((n, h, w, c_out)), device)
    W = tensor(rng.standard_normal((k, k, c_in, c_out)), device)
    gradcheck(lambda y, W: ndl.conv_transpose(y, W, stride, padding, output_padding,
                                              dilation), Y, W)


SECOND_ORDER_CASES = [  # (N, H, W, Cin, Cout, K, stride, padding, dilation)
    (2, 5, 5, 2, 3, 3, 1, 1, 1),
    (1, 6, 7, 2, 2, 4, 2, 1, 1),
    (2, 7, 6, 1, 2, 3, 2, 0, 2),
]


@pytest.mark.parametrize("case", SECOND_ORDER_CASES)
def test_conv_gradgradcheck(case, device):
    n, h, w, c_in, c_out, k, stride, padding, dilation = case
    rng = np.random.default_rng(1)
    X = tensor(rng.standard_normal((n, h, w, c_in)), device)
    W = tensor(rng.standard_normal((k, k, c_in, c_out)), device)
    gradgradcheck(lambda x, W: ndl.conv(x, W, stride, padding, dilation), X, W)


@pytest.mark.parametrize("case", SECOND_ORDER_CASES)
def test_conv_transpose_gradgradcheck(case, device):
    n, h, w, c_in, c_out, k, stride, padding, dilation = case
    rng = np.random.default_rng(2)
    Y = tensor(rng.standard_normal((n, h, w, c_out)), device)
    W = tensor(rng.standard_normal((k, k, c_in, c_out)), device)
    gradgradcheck(lambda y, W: ndl.conv_transpose(y, W, stride, padding, stride - 1,
                                                  dilation), Y, W)


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


def test_conv_weight_grad_gradgradcheck(device):
    rng = np.random.default_rng(4)
    X = tensor(rng.standard_normal((2, 5, 5, 2)), device)
    G = tensor(rng.standard_normal((2, 3, 3, 3)), device)
    gradcheck(lambda x, g: ndl.conv_weight_grad(x, g, 3, stride=2, padding=1), X, G)
    gradgradcheck(lambda x, g: ndl.conv_weight_grad(x, g, 3, stride=2, padding=1), X, G)


def test_conv_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, W = rng.standard_normal((2, 9, 8, 3)), rng.standard_normal((4, 4, 3, 5))
    X, Wt = ndl.Tensor(x), ndl.Tensor(W)
    out = ndl.conv(X, Wt, stride=2, padding=1)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(W.transpose(3, 2, 0, 1), requires_grad=True)
    t_out = torch.nn.functional.conv2d(tx, tw, stride=2, padding=1)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy().transpose(0, 2, 3, 1),
                               rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(t_out.shape)
    t_out.backward(torch.tensor(g))
    out.backward(ndl.Tensor(g.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(Wt.grad.numpy(), tw.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-9, atol=1e-9)


def test_conv_transpose_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    y, W = rng.standard_normal((2, 7, 7, 4)), rng.standard_normal((4, 4, 3, 4))
    Y, Wt = ndl.Tensor(y), ndl.Tensor(W)
    out = ndl.conv_transpose(Y, Wt, stride=2, padding=1, output_padding=1)
    ty = torch.tensor(y.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(W.transpose(3, 2, 0, 1), requires_grad=True)
    t_out = torch.nn.functional.conv_transpose2d(ty, tw, stride=2, padding=1,
                                                 output_padding=1)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy().transpose(0, 2, 3, 1),
                               rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(t_out.shape)
    t_out.backward(torch.tensor(g))
    out.backward(ndl.Tensor(g.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(Y.grad.numpy(), ty.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-9, atol=1e-9)
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
