"""cpu_numpy()'s native fused kernels (needle/backend_ndarray/fused_cpu.py): each gives its
op's NumPy composite result, bit for bit, on contiguous and permuted inputs, and declines
what it does not handle. The composite is the same op with the kernel table emptied."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.backend_ndarray.fused_cpu import make_fused_cpu
from tests.support.adam_run import train_linear_with_adam
from tests.support.fused_calls import count_fused_calls

pytestmark = [pytest.mark.nd_only,
              pytest.mark.skipif(not make_fused_cpu(),
                                 reason="needs the native module (cmake build)")]

DEVICE = ndl.cpu_numpy()


@pytest.fixture
def composite(monkeypatch):
    """A context in which cpu_numpy() has no fused kernels."""
    class Off:
        def __enter__(self):
            monkeypatch.setattr(DEVICE.mod, "fused", {})

        def __exit__(self, *exc):
            monkeypatch.undo()
    return Off()


def conv_run(x_nchw, w, transpose, stride, padding, dilation, output_padding=0):
    """(output, grad x, grad w) of a conv or conv_transpose layer on NCHW input."""
    x = ndl.Tensor(x_nchw, device=DEVICE, requires_grad=True)
    weight = ndl.Tensor(w, device=DEVICE, requires_grad=True)
    x_nhwc = ndl.ops.transpose(ndl.ops.transpose(x, (1, 2)), (2, 3))  # a permuted view
    if transpose:
        y = ndl.ops.conv_transpose(x_nhwc, weight, stride, padding, output_padding, dilation)
    else:
        y = ndl.ops.conv(x_nhwc, weight, stride, padding, dilation)
    seed = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    (y * ndl.Tensor(seed, device=DEVICE)).sum().backward()
    return y.numpy(), x.grad.numpy(), weight.grad.numpy()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), side=st.integers(3, 9), c_in=st.integers(1, 5),
       c_out=st.integers(1, 4), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), transpose=st.booleans())
def test_conv_ops_match_composite(composite, n, side, c_in, c_out, k, stride, padding,
                                  dilation, transpose):
    output_padding = stride - 1  # the largest allowed: odd output sizes
    if transpose and (side - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding < 0:
        return
    if not transpose and side + 2 * padding - dilation * (k - 1) - 1 < 0:
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, side, side)).astype(np.float32)
    w = rng.standard_normal((k, k, c_out, c_in) if transpose else (k, k, c_in, c_out))
    w = w.astype(np.float32)
    args = (x, w, transpose, stride, padding, dilation, output_padding)
    with count_fused_calls(DEVICE) as calls:
        fused = conv_run(*args)
    with composite:
        expected = conv_run(*args)
    assert calls["im2col"] >= 1  # the forward or a gradient gathers patches
    for got, want in zip(fused, expected):
        np.testing.assert_array_equal(got, want)


def test_conv_matches_torch_with_padding_and_dilation():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    with count_fused_calls(DEVICE) as calls:
        x_nhwc = ndl.Tensor(x.transpose(0, 2, 3, 1), device=DEVICE)
        y = ndl.ops.conv(x_nhwc, ndl.Tensor(w, device=DEVICE), stride=2, padding=2,
                         dilation=2).numpy().transpose(0, 3, 1, 2)
    assert calls["im2col"] == 1
    want = torch.nn.functional.conv2d(torch.from_numpy(x),
                                      torch.from_numpy(w.transpose(3, 2, 0, 1).copy()),
                                      stride=2, padding=2, dilation=2).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("slope", [0.2, 0.0, 1.5])
def test_leaky_relu_matches_composite(composite, create_graph, slope):
    rng = np.random.default_rng(3)
    x_host = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    x_host[0, 0, 0, 0] = 0.0
    x_host[0, 0, 0, 1] = np.nan
    seed = np.linspace(-1, 1, x_host.size, dtype=np.float32).reshape(3, 2, 5, 4)

    def run():
        x = ndl.Tensor(x_host, device=DEVICE, requires_grad=True)
        view = ndl.ops.transpose(x, (1, 3))  # a permuted input keeps its layout
        y = ndl.ops.leaky_relu(view, slope)
        y.backward(ndl.Tensor(seed, device=DEVICE), create_graph=create_graph)
        return y.numpy(), x.grad.numpy()

    with count_fused_calls(DEVICE) as calls:
        fused = run()
    with composite:
        expected = run()
    assert calls["leaky_relu"] == 1 and calls["leaky_relu_grad"] == (0 if create_graph else 1)
    for got, want in zip(fused, expected):
        np.testing.assert_array_equal(got, want)
    # by hand: the slope below zero, at the kink and at NaN, 1 above (exactly)
    factor = np.where(x_host.swapaxes(1, 3) > 0, 1, slope).astype(np.float32)
    np.testing.assert_array_equal(fused[1], (factor * seed).swapaxes(1, 3))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_composite(composite, weight_decay):
    with count_fused_calls(DEVICE) as calls:
        params, _ = train_linear_with_adam(DEVICE, weight_decay)
    with composite:
        expected, _ = train_linear_with_adam(DEVICE, weight_decay)
    assert calls["adam"] == 3 * 2  # a parameter's first step is the composite's
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-8)


def test_float64_falls_back_to_the_composite():
    x = ndl.Tensor(np.arange(-3.0, 3.0).reshape(1, 2, 3, 1), device=DEVICE, dtype="float64")
    w = ndl.Tensor(np.ones((2, 2, 1, 1)), device=DEVICE, dtype="float64")
    with count_fused_calls(DEVICE) as calls:
        y = ndl.ops.conv(x, w, padding=0)
        z = ndl.ops.leaky_relu(x, 0.1)
    assert y.dtype == z.dtype == "float64"
    np.testing.assert_array_equal(y.numpy()[0, :, :, 0], [[-3 - 2 + 0 + 1, -2 - 1 + 1 + 2]])
    np.testing.assert_array_equal(z.numpy().ravel(), np.arange(-3.0, 3.0) * [.1, .1, .1, 1, 1, 1])
    assert calls["im2col"] == 1 and calls["leaky_relu"] == 1  # asked, and declined


def test_fused_off_by_environment(monkeypatch):
    monkeypatch.setenv("NEEDLE_FUSED", "0")
    assert make_fused_cpu() == {}
    monkeypatch.setenv("NEEDLE_FUSED", "1")
    assert sorted(make_fused_cpu()) == ["adam", "col2im", "im2col", "leaky_relu",
                                        "leaky_relu_grad"]
