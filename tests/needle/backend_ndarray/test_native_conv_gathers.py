"""cpu()'s native im2col and col2im (NDArray.im2col / col2im, reached by array_api.fused)
against NumPy references written here: patches of the zero-padded input, and the scatter-add
one kernel offset at a time (the composite's order, so col2im's sums must match bit for bit).
float32 and float64, strided (permuted, sliced) inputs, strides, dilations, paddings."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import backend_ndarray as nd
from needle.backend_ndarray import array_api

native = pytest.importorskip("needle.backend_ndarray.ndarray_backend_cpu",
                             reason="native cpu backend not built")
if not hasattr(native, "im2col"):
    pytest.skip("native module built before im2col/col2im", allow_module_level=True)

GEOMETRIES = [  # (N, H, W, C), kernel, stride, padding, dilation
    ((2, 5, 6, 3), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 14, 14, 8), (4, 4), (2, 2), (1, 1), (1, 1)),
    ((1, 7, 9, 5), (2, 3), (2, 1), (0, 2), (2, 1)),
    ((2, 4, 4, 1), (4, 4), (1, 1), (0, 0), (1, 1)),
    ((2, 6, 5, 4), (1, 1), (3, 2), (2, 0), (1, 1)),
]


def out_size(shape, kernel, stride, padding, dilation):
    return tuple((shape[1 + d] + 2 * padding[d] - dilation[d] * (kernel[d] - 1) - 1)
                 // stride[d] + 1 for d in range(2))


def im2col_reference(x, kernel, stride, padding, dilation):
    n, h, w, c = x.shape
    oh, ow = out_size(x.shape, kernel, stride, padding, dilation)
    padded = np.zeros((n, h + 2 * padding[0], w + 2 * padding[1], c), x.dtype)
    padded[:, padding[0]:padding[0] + h, padding[1]:padding[1] + w] = x
    out = np.empty((n, oh, ow, kernel[0], kernel[1], c), x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    out[:, oy, ox, i, j] = padded[:, oy * stride[0] + i * dilation[0],
                                                  ox * stride[1] + j * dilation[1]]
    return out.reshape(n * oh * ow, -1)


def col2im_reference(cols, canvas_shape, stride, dilation, origin=(0, 0), out_size=None):
    """The (OH, OW) window at `origin` (the whole canvas by default) of the scatter-add."""
    n, h, w, kh, kw, c = cols.shape
    canvas = np.zeros(canvas_shape, cols.dtype)
    for i in range(kh):
        for j in range(kw):
            canvas[:, i * dilation[0]:i * dilation[0] + (h - 1) * stride[0] + 1:stride[0],
                   j * dilation[1]:j * dilation[1] + (w - 1) * stride[1] + 1:stride[1]] \
                += cols[:, :, :, i, j]
    (y, x), (oh, ow) = origin, out_size or canvas_shape[1:3]
    return canvas[:, y:y + oh, x:x + ow]


def fused_col2im(cols, canvas_shape, stride, dilation, origin=(0, 0), out_size=None):
    return array_api.fused("col2im", cols, canvas_shape=canvas_shape, origin=origin,
                           out_size=out_size or canvas_shape[1:3], stride=stride,
                           dilation=dilation)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["compact", "permuted", "sliced"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_im2col_matches_padded_patches(geometry, layout, dtype):
    shape, kernel, stride, padding, dilation = geometry
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    device = nd.cpu()
    if layout == "compact":
        a = nd.array(x, device=device, dtype=dtype)
    elif layout == "permuted":  # NHWC view of NCHW storage
        a = nd.array(x.transpose(0, 3, 1, 2), device=device, dtype=dtype).permute((0, 2, 3, 1))
    else:  # a window of a bigger array, with an offset
        big = np.zeros((shape[0] + 1, shape[1] + 2, shape[2] + 3, shape[3] + 1), dtype)
        big[1:, 2:, 3:, 1:] = x
        a = nd.array(big, device=device, dtype=dtype)[1:, 2:, 3:, 1:]
    assert layout == "compact" or not a.is_compact()
    size = out_size(shape, kernel, stride, padding, dilation)
    got = array_api.fused("im2col", a, kernel=kernel, stride=stride, padding=padding,
                          dilation=dilation, out_size=size)
    assert got is not None and got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(),
                                  im2col_reference(x, kernel, stride, padding, dilation))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_col2im_matches_offset_by_offset_adds(geometry, dtype):
    shape, kernel, stride, _, dilation = geometry
    n, h, w, c = shape
    rng = np.random.default_rng(sum(shape) + 1)
    cols = rng.standard_normal((n, h, w, *kernel, c)).astype(dtype)
    canvas_shape = (n, (h - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1 + 1,
                    (w - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1, c)
    a = nd.array(cols, device=nd.cpu(), dtype=dtype)
    got = fused_col2im(a, canvas_shape, stride, dilation)
    assert got is not None and got.shape == canvas_shape
    np.testing.assert_array_equal(got.numpy(),
                                  col2im_reference(cols, canvas_shape, stride, dilation))
    # a non-compact view of the same columns (compacted first) gives the same canvas
    flipped = nd.array(np.ascontiguousarray(cols.transpose(5, 0, 1, 2, 3, 4)),
                       device=nd.cpu(), dtype=dtype).permute((1, 2, 3, 4, 5, 0))
    again = fused_col2im(flipped, canvas_shape, stride, dilation)
    np.testing.assert_array_equal(again.numpy(), got.numpy())
    # a window of the canvas (conv_transpose's padding crops it) is computed on its own
    origin = (min(1, canvas_shape[1] - 1), min(2, canvas_shape[2] - 1))
    size = (canvas_shape[1] - origin[0] - 1 or 1, canvas_shape[2] - origin[1])
    window = fused_col2im(a, canvas_shape, stride, dilation, origin, size)
    assert window.shape == (n, *size, c) and window.is_compact()
    np.testing.assert_array_equal(
        window.numpy(), col2im_reference(cols, canvas_shape, stride, dilation, origin, size))


@st.composite
def drawn_geometries(draw):
    """(shape, kernel, stride, padding, dilation), paddings up to past the kernel's reach
    (patch rows wholly in the padding), grey and multi-channel images."""
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(2))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(2))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(2))
    padding = tuple(draw(st.integers(0, 4)) for _ in range(2))
    side = [draw(st.integers(1, 7)) for _ in range(2)]
    for d in range(2):  # at least one output position
        side[d] = max(side[d], dilation[d] * (kernel[d] - 1) + 1 - 2 * padding[d])
    shape = (draw(st.integers(1, 2)), side[0], side[1], draw(st.sampled_from([1, 2, 5, 17])))
    return shape, kernel, stride, padding, dilation


@settings(max_examples=60, deadline=None)
@given(geometry=drawn_geometries(), permuted=st.booleans())
def test_drawn_gathers_match_the_references(geometry, permuted):
    shape, kernel, stride, padding, dilation = geometry
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    a = nd.array(x.transpose(0, 3, 1, 2), device=nd.cpu()).permute((0, 2, 3, 1)) \
        if permuted else nd.array(x, device=nd.cpu())
    size = out_size(shape, kernel, stride, padding, dilation)
    got = array_api.fused("im2col", a, kernel=kernel, stride=stride, padding=padding,
                          dilation=dilation, out_size=size)
    np.testing.assert_array_equal(got.numpy(),
                                  im2col_reference(x, kernel, stride, padding, dilation))
    cols = got.numpy().reshape(shape[0], *size, *kernel, shape[3])
    canvas_shape = (shape[0], (size[0] - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1,
                    (size[1] - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 2, shape[3])
    # conv_transpose's window: the canvas cropped by the padding, as far as it reaches
    origin = tuple(min(p, c - 1) for p, c in zip(padding, canvas_shape[1:3]))
    size = tuple(c - o - p if c - o - p > 0 else 1
                 for c, o, p in zip(canvas_shape[1:3], origin, padding))
    window = fused_col2im(nd.array(cols, device=nd.cpu()), canvas_shape, stride, dilation,
                          origin, size)
    np.testing.assert_array_equal(
        window.numpy(), col2im_reference(cols, canvas_shape, stride, dilation, origin, size))


def test_gathers_reject_bad_geometry():
    device = nd.cpu()
    a = nd.array(np.zeros((1, 4, 4, 2), np.float32), device=device)
    out = nd.NDArray.make((1 * 3 * 3, 9 * 2), device=device)
    with pytest.raises(ValueError, match="im2col"):  # 3x3 outputs of a 3x3 kernel need 5x5
        native.im2col(a._handle, out._handle, a.shape, a.strides, 0, (3, 3), (1, 1), (0, 0),
                      (1, 1), (3, 3))
    with pytest.raises(IndexError, match="im2col"):
        native.im2col(a._handle, out._handle, (1, 5, 4, 2), a.strides, 0, (3, 3), (1, 1),
                      (0, 0), (1, 1), (3, 2))
    cols = nd.array(np.zeros((1, 2, 2, 3, 3, 2), np.float32), device=device)
    window = nd.NDArray.make((1, 3, 4, 2), device=device)
    for out_shape, origin in [((1, 3, 4, 2), (-1, 0)),   # a negative origin
                              ((2, 3, 4, 2), (0, 0)),    # not the columns' batch
                              ((1, 3, 4, 3), (0, 0)),    # nor their channels
                              ((1, 0, 4, 2), (0, 0))]:   # an empty window
        with pytest.raises(ValueError, match="col2im: the output window does not fit"):
            native.col2im(cols._handle, window._handle, cols.shape, out_shape, origin,
                          (1, 1), (1, 1))
    with pytest.raises(ValueError, match="col2im"):  # out holds 24 elements, not 2 * 24
        native.col2im(cols._handle, window._handle, cols.shape, (1, 6, 4, 2), (0, 0),
                      (1, 1), (1, 1))
    with pytest.raises(ValueError, match="fused col2im: the output window does not fit"):
        native.fused_col2im(np.zeros((1, 2, 2, 3, 3, 2), np.float32), (1, 3, 4, 2), (0, -2),
                            (1, 1), (1, 1))


def test_conv_on_cpu_uses_the_native_gathers(monkeypatch):
    """conv and conv_transpose on cpu(): forward and gradients against cpu_numpy() (whose
    fused kernels compute the same gathers), and no padded copy / 6-D compact on the way."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    W = rng.standard_normal((4, 4, 3, 5)).astype(np.float32)
    calls = []
    for name in ("im2col", "col2im"):
        original = getattr(native, name)
        monkeypatch.setattr(native, name,
                            lambda *args, _n=name, _f=original: calls.append(_n) or _f(*args))
    results = {}
    for device in (ndl.cpu(), ndl.cpu_numpy()):
        tx = ndl.Tensor(x, device=device, requires_grad=True)
        tW = ndl.Tensor(W, device=device, requires_grad=True)
        y = ndl.ops.conv(tx, tW, stride=2, padding=1)
        z = ndl.ops.conv_transpose(y, tW, stride=2, padding=1)
        (z * z).sum().backward()
        results[device.name] = (y.numpy(), z.numpy(), tx.grad.numpy(), tW.grad.numpy())
    assert "im2col" in calls and "col2im" in calls
    for got, expected in zip(results["cpu"], results["cpu_numpy"]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
