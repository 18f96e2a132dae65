"""The native fused kernels of cpu_numpy() (needle/backend_ndarray/fused_cpu.py, over NumPy
arrays) and of cpu() (fused_native.py, over the module's buffers): each gives its op's
composite result, bit for bit (BatchNorm: to float32 rounding), on contiguous, permuted and
strided inputs, and declines what it does not handle. The composite is the same op on the
same device with the kernel table emptied."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.backend_ndarray.fused_cpu import make_fused_cpu
from tests.support.adam_run import train_linear_with_adam
from tests.support.fused_calls import count_fused_calls

pytestmark = [pytest.mark.nd_only,
              pytest.mark.skipif(not make_fused_cpu(), reason="needs the native fused "
                                 "kernels (cmake build; NEEDLE_FUSED not 0)")]



@pytest.fixture(params=[ndl.cpu_numpy(), ndl.cpu()], ids=str)
def device(request):
    return request.param


@pytest.fixture
def composite(monkeypatch, device):
    """A context in which the device has no fused kernels."""
    class Off:
        def __enter__(self):
            monkeypatch.setattr(device.mod, "fused", {})

        def __exit__(self, *exc):
            monkeypatch.undo()
    return Off()


def conv_run(device, x_nchw, w, transpose, stride, padding, dilation, output_padding=0):
    """(output, grad x, grad w) of a conv or conv_transpose layer on NCHW input."""
    x = ndl.Tensor(x_nchw, device=device, requires_grad=True)
    weight = ndl.Tensor(w, device=device, requires_grad=True)
    x_nhwc = ndl.ops.transpose(ndl.ops.transpose(x, (1, 2)), (2, 3))  # a permuted view
    if transpose:
        y = ndl.ops.conv_transpose(x_nhwc, weight, stride, padding, output_padding, dilation)
    else:
        y = ndl.ops.conv(x_nhwc, weight, stride, padding, dilation)
    seed = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    (y * ndl.Tensor(seed, device=device)).sum().backward()
    return y.numpy(), x.grad.numpy(), weight.grad.numpy()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), side=st.integers(3, 9), c_in=st.integers(1, 5),
       c_out=st.integers(1, 4), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), transpose=st.booleans())
def test_conv_ops_match_composite(composite, device, n, side, c_in, c_out, k, stride, padding,
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
    with count_fused_calls(device) as calls:
        fused = conv_run(device, *args)
    with composite:
        expected = conv_run(device, *args)
    assert calls["im2col"] >= 1  # the forward or a gradient gathers patches
    for got, want in zip(fused, expected):
        np.testing.assert_array_equal(got, want)


def test_conv_matches_torch_with_padding_and_dilation(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    with count_fused_calls(device) as calls:
        x_nhwc = ndl.Tensor(x.transpose(0, 2, 3, 1), device=device)
        y = ndl.ops.conv(x_nhwc, ndl.Tensor(w, device=device), stride=2, padding=2,
                         dilation=2).numpy().transpose(0, 3, 1, 2)
    assert calls["im2col"] == 1
    want = torch.nn.functional.conv2d(torch.from_numpy(x),
                                      torch.from_numpy(w.transpose(3, 2, 0, 1).copy()),
                                      stride=2, padding=2, dilation=2).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("slope", [0.2, 0.0, 1.5])
def test_leaky_relu_matches_composite(composite, device, create_graph, slope):
    rng = np.random.default_rng(3)
    x_host = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    x_host[0, 0, 0, 0] = 0.0
    x_host[0, 0, 0, 1] = np.nan
    seed = np.linspace(-1, 1, x_host.size, dtype=np.float32).reshape(3, 2, 5, 4)

    def run():
        x = ndl.Tensor(x_host, device=device, requires_grad=True)
        view = ndl.ops.transpose(x, (1, 3))  # a permuted input keeps its layout
        y = ndl.ops.leaky_relu(view, slope)
        y.backward(ndl.Tensor(seed, device=device), create_graph=create_graph)
        return y.numpy(), x.grad.numpy()

    with count_fused_calls(device) as calls:
        fused = run()
    with composite:
        expected = run()
    assert calls["leaky_relu"] == 1 and calls["leaky_relu_grad"] == (0 if create_graph else 1)
    for got, want in zip(fused, expected):
        np.testing.assert_array_equal(got, want)
    # by hand: the slope below zero, at the kink and at NaN, 1 above (exactly)
    factor = np.where(x_host.swapaxes(1, 3) > 0, 1, slope).astype(np.float32)
    np.testing.assert_array_equal(fused[1], (factor * seed).swapaxes(1, 3))


@pytest.mark.parametrize("create_graph", [False, True])
def test_relu_gradient_matches_composite_bit_for_bit(composite, device, create_graph):
    """ReLU's gradient without a graph is leaky_relu_grad at slope 0: g where x > 0, else
    0 * g, the composite's g * mask to the bit (signed zeros, inf -> NaN, NaN kept)."""
    rng = np.random.default_rng(5)
    x_host = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x_host.flat[:4] = [0.0, -0.0, np.nan, np.inf]
    seed = rng.standard_normal(x_host.shape).astype(np.float32)
    seed.flat[4:10] = [-0.0, 0.0, np.inf, -np.inf, np.nan, -2.0]
    x_host.flat[4:10] = [-1.0, -1.0, -1.0, 1.0, -1.0, -3.0]

    def run():
        x = ndl.Tensor(x_host, device=device, requires_grad=True)
        y = ndl.ops.relu(ndl.ops.transpose(x, (1, 3)))
        y.backward(ndl.Tensor(seed.swapaxes(1, 3), device=device), create_graph=create_graph)
        return x.grad.numpy()

    with count_fused_calls(device) as calls, np.errstate(invalid="ignore"):  # 0 * inf
        fused = run()
    with composite, np.errstate(invalid="ignore"):
        expected = run()
    assert calls["leaky_relu_grad"] == (0 if create_graph else 1)
    np.testing.assert_array_equal(fused.view(np.uint32), expected.view(np.uint32))
    with np.errstate(invalid="ignore"):
        by_hand = seed * (x_host > 0).astype(np.float32)
    np.testing.assert_array_equal(fused.view(np.uint32), by_hand.view(np.uint32))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_composite(composite, device, weight_decay):
    with count_fused_calls(device) as calls:
        params, _ = train_linear_with_adam(device, weight_decay)
    with composite:
        expected, _ = train_linear_with_adam(device, weight_decay)
    assert calls["adam"] == 3 * 2  # a parameter's first step is the composite's
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-8)


# ---- batch norm: sums in double, so to float32 rounding (not bits) -----------------------
def relative_error(got, want, scale=None):
    """max |got - want| over `scale` (default max |want|)."""
    scale = np.abs(want).max() if scale is None else scale
    return float(np.abs(got - want).max() / max(scale, 1e-30))


def gradient_scales(x, weight, y, seed):
    """The scale of the float32 rounding in each of (y, gx, gweight, gbias): the size of the
    terms each sums or cancels (gx, with two values per channel, is O(eps) of its terms),
    times the conditioning 1 + |mean| / std (x - mean in float32 loses that many digits; a
    float64 PyTorch on the same inputs does not)."""
    axes = tuple(i for i in range(x.ndim) if i != 1)
    x, seed = x.astype(np.float64), np.abs(seed.astype(np.float64))
    std = np.sqrt(x.var(axes) + 1e-5)
    kept = [1 if i in axes else -1 for i in range(x.ndim)]
    x_hat = np.abs(x - x.mean(axes, keepdims=True)) / std.reshape(kept)
    condition = (1 + np.abs(x.mean(axes)) / std).max()
    return [condition * s for s in (np.abs(y).max(), (np.abs(weight) / std).max() * seed.max(),
                                    (seed * x_hat).sum(axes).max(), seed.sum(axes).max())]


def batch_norm_run(device, x_host, weight, bias, seed, layout, create_graph=False):
    """(y, grad x, grad weight, grad bias) of ops.batch_normalize on `device`, x handed
    in as the drawn layout: contiguous, NCHW over a channels-last buffer (as the
    convolutions give), or a strided slice (as conv_transpose's crop; the kernels copy it)."""
    if layout == "channels_last":
        order = (0, *range(2, x_host.ndim), 1)
        x = ndl.Tensor(np.ascontiguousarray(x_host.transpose(order)), device=device,
                       requires_grad=True)
        view = ndl.permute(x, tuple(np.argsort(order)))
    elif layout == "strided":
        x = ndl.Tensor(np.repeat(x_host, 2, axis=0), device=device, requires_grad=True)
        view = ndl.undilate(x, (0,), 1)
    else:
        x = view = ndl.Tensor(x_host, device=device, requires_grad=True)
    w, b = (ndl.Tensor(v, device=device, requires_grad=True) for v in (weight, bias))
    y = ndl.batch_normalize(view, w, b)
    assert (y.op.x_hat is None) == bool(device.mod.fused)  # the kernel ran, not declined
    y.backward(ndl.Tensor(seed, device=device), create_graph=create_graph)
    gx = x.grad.numpy()
    if layout == "channels_last":
        gx = gx.transpose(np.argsort(order))
    elif layout == "strided":
        gx = gx[::2]
    return y.numpy(), gx, w.grad.numpy(), b.grad.numpy()


def torch_batch_norm(torch, x, weight, bias, seed):
    """PyTorch's training-mode batch_norm in float64 on the same float32 values."""
    xt, wt, bt = (torch.tensor(v, dtype=torch.float64, requires_grad=True)
                  for v in (x, weight, bias))
    y = torch.nn.functional.batch_norm(xt, None, None, wt, bt, training=True, eps=1e-5)
    y.backward(torch.tensor(seed, dtype=torch.float64))
    return [t.detach().numpy() for t in (y, xt.grad, wt.grad, bt.grad)]


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple),
       layout=st.sampled_from(["contiguous", "channels_last", "strided"]),
       offset=st.floats(-10, 10), scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_batch_norm_matches_composite_and_torch(composite, device, shape, layout, offset, scale):
    torch = pytest.importorskip("torch")
    if np.prod(shape) // shape[1] < 2:  # one value per channel: var 0, nothing to compare
        return
    rng = np.random.default_rng(7)
    c = shape[1]
    x = (rng.standard_normal(shape) * scale + offset * scale).astype(np.float32)
    weight, bias = (rng.standard_normal(c).astype(np.float32) for _ in range(2))
    seed = rng.standard_normal(shape).astype(np.float32)
    with count_fused_calls(device) as calls:
        fused = batch_norm_run(device, x, weight, bias, seed, layout)
    with composite:
        expected = batch_norm_run(device, x, weight, bias, seed, layout)
    want = torch_batch_norm(torch, x, weight, bias, seed)
    assert calls["batch_norm"] == 1 and calls["batch_norm_grad"] == 1
    names, scales = ("y", "gx", "gweight", "gbias"), gradient_scales(x, weight, want[0], seed)
    for name, got, same, truth, scale in zip(names, fused, expected, want, scales):
        assert got.dtype == np.float32 and got.shape == truth.shape, name
        # measured on 300 examples, against torch: fused <= 1.1e-7, composite <= 1.2e-7
        assert relative_error(got, truth, scale) < 5e-7, name
        assert relative_error(got, same, scale) < 5e-7, name


def test_batch_norm_second_derivative_matches_torch(device):
    """A gradient penalty through BatchNorm2d, as WGAN-GP's: the first backward records a
    graph (built from ops, no fused gradient), the final one does not (fused)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x_host = (rng.standard_normal((4, 3, 5, 5)) * 2 + 1).astype(np.float32)
    weight, bias = (rng.standard_normal(3).astype(np.float32) for _ in range(2))
    seed = rng.standard_normal(x_host.shape).astype(np.float32)
    layer = ndl.nn.BatchNorm2d(3, device=device)
    layer.weight.data = ndl.Tensor(weight, device=device)
    layer.bias.data = ndl.Tensor(bias, device=device)
    with count_fused_calls(device) as calls:
        x = ndl.Tensor(x_host, device=device, requires_grad=True)
        out = (layer(x) * ndl.Tensor(seed, device=device)).sum()
        (gx,) = ndl.grad([out], [x], create_graph=True)
        (out + (gx * gx).sum()).backward(create_graph=False)
    assert calls["batch_norm"] == 1 and calls["batch_norm_grad"] == 1

    xt, wt, bt = (torch.tensor(v, dtype=torch.float64, requires_grad=True)
                  for v in (x_host, weight, bias))
    out_t = (torch.nn.functional.batch_norm(xt, None, None, wt, bt, training=True)
             * torch.tensor(seed, dtype=torch.float64)).sum()
    (gx_t,) = torch.autograd.grad(out_t, xt, create_graph=True)
    (out_t + (gx_t * gx_t).sum()).backward()
    for got, want in ((gx, gx_t), (x.grad, xt.grad), (layer.weight.grad, wt.grad),
                      (layer.bias.grad, bt.grad)):
        assert relative_error(got.numpy(), want.detach().numpy()) < 1e-5


def test_float64_falls_back_to_the_composite(device):
    x = ndl.Tensor(np.arange(-3.0, 3.0).reshape(1, 2, 3, 1), device=device, dtype="float64")
    w = ndl.Tensor(np.ones((2, 2, 1, 1)), device=device, dtype="float64")
    with count_fused_calls(device) as calls:
        y = ndl.ops.conv(x, w, padding=0)
        z = ndl.ops.leaky_relu(x, 0.1)
        b = ndl.batch_normalize(x, ndl.ones(2, dtype="float64", device=device),
                                ndl.zeros(2, dtype="float64", device=device))
    assert y.dtype == z.dtype == b.dtype == "float64"
    np.testing.assert_array_equal(y.numpy()[0, :, :, 0], [[-3 - 2 + 0 + 1, -2 - 1 + 1 + 2]])
    np.testing.assert_array_equal(z.numpy().ravel(), np.arange(-3.0, 3.0) * [.1, .1, .1, 1, 1, 1])
    # each channel holds three consecutive values: x_hat = (-1, 0, 1) / sqrt(2/3 + eps)
    np.testing.assert_allclose(b.numpy().ravel(), np.tile([-1, 0, 1], 2) / np.sqrt(2 / 3 + 1e-5),
                               rtol=1e-14)
    assert calls["im2col"] == calls["leaky_relu"] == calls["batch_norm"] == 1  # asked, declined


def test_fused_off_by_environment(monkeypatch):
    monkeypatch.setenv("NEEDLE_FUSED", "0")
    assert make_fused_cpu() == {}
    monkeypatch.setenv("NEEDLE_FUSED", "1")
    assert sorted(make_fused_cpu()) == ["adam", "batch_norm", "batch_norm_grad", "col2im",
                                        "im2col", "leaky_relu", "leaky_relu_grad"]


def test_a_module_built_before_the_batch_norm_kernels_serves_the_others(monkeypatch):
    import types

    import needle.backend_ndarray.fused_cpu as fused_cpu
    old = types.SimpleNamespace(fused_adam=None)  # has the older kernels' names only
    monkeypatch.setattr(fused_cpu, "importlib",
                        types.SimpleNamespace(import_module=lambda name: old))
    assert sorted(make_fused_cpu()) == ["adam", "col2im", "im2col", "leaky_relu",
                                        "leaky_relu_grad"]


def test_native_table_off_by_environment_and_for_an_older_module(monkeypatch):
    import types

    from needle.backend_ndarray.fused_native import make_fused_native
    native = ndl.cpu().mod
    monkeypatch.setenv("NEEDLE_FUSED", "0")
    assert make_fused_native(native) == {}
    monkeypatch.setenv("NEEDLE_FUSED", "1")
    assert sorted(make_fused_native(native)) == sorted(make_fused_cpu())
    assert make_fused_native(types.SimpleNamespace(im2col=None)) == {}  # no batch_norm yet


def test_native_kernels_name_a_wrong_buffer():
    native, cpu = ndl.cpu().mod, ndl.cpu()
    x = native.Array(6)
    with pytest.raises(ValueError, match="leaky_relu: out holds 5 elements, expected 6"):
        native.leaky_relu(x, native.Array(5), 0.2)
    with pytest.raises(ValueError, match="batch_norm: weight must be float32, got float64"):
        native.batch_norm(x, native.Array(2, "float64"), native.Array(2), native.Array(6),
                          native.Array(2), native.Array(2), native.Array(2), 1, 2, 3, 1e-5)
    with pytest.raises(ValueError, match="batch_norm_grad: expected a non-empty"):
        native.batch_norm_grad(*(native.Array(0) for _ in range(8)), 0, 2, 3)
    assert cpu.mod.fused["leaky_relu"](ndl.NDArray([1, 2], device=cpu).astype("float64"),
                                       slope=0.2) is None  # declined: the composite runs


@pytest.mark.parametrize("shape", [(6, 19, 37), (41, 21, 1), (3, 8, 1), (2, 5, 8)],
                         ids=["runs", "lanes", "eight_lanes", "one_vector_run"])
def test_batch_norm_kernels_round_alike_on_every_isa(isa, shape):
    """The AVX2 loops (run_sums, lane_sums) do the scalar loops' double operations in the
    same order: the same float32 results as the baseline variant (forced by set_gemm_isa,
    which the BatchNorm loops follow), bit for bit."""
    native = ndl.cpu().mod
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    w, b = (rng.standard_normal(shape[1]).astype(np.float32) for _ in range(2))
    y, mean, var, inv_std = native.fused_batch_norm(x, w, b, 1e-5)
    grads = native.fused_batch_norm_grad(x, g, w, mean, inv_std)
    native.set_gemm_isa("baseline")
    try:
        y0, mean0, var0, inv0 = native.fused_batch_norm(x, w, b, 1e-5)
        grads0 = native.fused_batch_norm_grad(x, g, w, mean, inv_std)
    finally:
        native.set_gemm_isa(isa)
    for got, want in zip((y, mean, var, inv_std, *grads), (y0, mean0, var0, inv0, *grads0)):
        np.testing.assert_array_equal(got, want)
    x64 = x.astype(np.float64)  # and the statistics are right
    np.testing.assert_allclose(mean, x64.mean((0, 2)), rtol=1e-6)
    np.testing.assert_allclose(var, x64.var((0, 2)), rtol=1e-5)
