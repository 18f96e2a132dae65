"""NDArray's course interface (COURSE_API.md section 10) on cpu_numpy() and cpu().

Views must share the buffer (`_handle`), strides are in elements, indexing never drops an
axis, and cpu()'s flat-memory table is callable directly, as hw3 does.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import needle as ndl
from needle import backend_ndarray as nd
from needle.backend_ndarray.ndarray_backend_cuda import load_cupy
from tests.strategies import arrays, permutations, shapes, slices


def _strides_in_elements(array):
    return tuple(s // array.itemsize for s in array.strides)


def _same_buffer(a, b):
    return a._handle.ptr() == b._handle.ptr()


# ---- views ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, nd_view, np_view", [
    ((4, 5, 6), lambda a: a.permute((2, 0, 1)), lambda a: np.transpose(a, (2, 0, 1))),
    ((4, 1, 6), lambda a: a.broadcast_to((3, 4, 5, 6)),
     lambda a: np.broadcast_to(a, (3, 4, 5, 6))),
    ((4, 6), lambda a: a.reshape((2, 2, 6)), lambda a: a.reshape(2, 2, 6)),
    ((4, 6), lambda a: a.reshape((3, -1)), lambda a: a.reshape(3, -1)),
    ((8, 8), lambda a: a[2:7:2, 3:], lambda a: a[2:7:2, 3:]),
    ((7, 8), lambda a: a.permute((1, 0))[3:7, 2:5], lambda a: a.T[3:7, 2:5]),
], ids=["permute", "broadcast_to", "reshape", "reshape-1", "getitem", "permute-getitem"])
def test_views_share_the_buffer_and_match_numpy_strides(shape, nd_view, np_view, device):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    a = nd.array(x, device=device)
    view, expected = nd_view(a), np_view(x)
    assert _same_buffer(a, view)
    assert view.shape == expected.shape
    assert view.strides == _strides_in_elements(expected)
    np.testing.assert_array_equal(view.numpy(), expected)
    packed = view.compact()
    assert packed.is_compact()
    np.testing.assert_array_equal(packed.numpy(), expected)


@given(data=st.data())
def test_six_dim_non_compact_views_compact_like_numpy(device, data):
    """Compaction of views of any rank: a permuted, sliced 6-D view vs NumPy."""
    shape = data.draw(shapes(min_dims=6, max_dims=6, max_side=4), label="shape")
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    permutation = data.draw(permutations(6), label="permutation")
    index = data.draw(slices(tuple(shape[i] for i in permutation)), label="slices")
    view = nd.array(x, device=device).permute(permutation)[index]
    expected = np.transpose(x, permutation)[index]
    assert view.strides == _strides_in_elements(expected)
    packed = view.compact()
    assert packed.is_compact()
    assert packed.strides == _strides_in_elements(np.empty(expected.shape, np.float32))
    np.testing.assert_array_equal(packed.numpy(), expected)


@given(data=st.data())
def test_flip_reads_through_negative_strides(device, data):
    x = data.draw(arrays(data.draw(shapes(), label="shape")), label="x").astype(np.float32)
    axes = data.draw(st.lists(st.integers(0, x.ndim - 1), unique=True, min_size=1),
                     label="axes")
    view = nd.array(x, device=device).permute(tuple(reversed(range(x.ndim))))
    flipped = view.flip(tuple(axes))
    assert flipped.is_compact()
    np.testing.assert_array_equal(flipped.numpy(), np.flip(x.T, axes))


def test_indexing_never_drops_an_axis(device):
    a = nd.array(np.arange(60.0).reshape(3, 4, 5), device=device)
    assert a[1].shape == (1, 4, 5)
    assert a[1, 2:4].shape == (1, 2, 5)
    assert a[-1, 0, -2].shape == (1, 1, 1)
    assert a[-1, 0, -2].numpy().item() == 2 * 20 + 0 * 5 + 3
    with pytest.raises(IndexError):
        a[3]


class _ShapeAndSlices(nd.NDArray):
    """hw3 subclasses NDArray and calls process_slice while building its parameters."""

    def __getitem__(self, idxs):
        return self.shape, tuple(self.process_slice(s, i) if isinstance(s, slice)
                                 else slice(s, s + 1, 1) for i, s in enumerate(idxs))


def test_process_slice_is_public_and_clamps():
    shape, index = _ShapeAndSlices(np.ones((4, 5, 6)))[1:4:2, 0, :]
    assert shape == (4, 5, 6)
    assert index == (slice(1, 4, 2), slice(0, 1, 1), slice(0, 6, 1))
    _, (clamped, negative) = _ShapeAndSlices(np.ones((4, 5)))[2:100, -3:]
    assert clamped == slice(2, 4, 1) and negative == slice(2, 5, 1)


# ---- in-place writes ------------------------------------------------------------------------
@pytest.mark.parametrize("lhs, rhs", [
    ((slice(1, 2), 0, 0), (slice(1, 2), 0, 0)),
    ((slice(1, 4, 2), 0, 0), (slice(1, 3), 0, 0)),
    ((slice(1, 3), slice(2, 5), slice(2, 6)), (slice(0, 2), slice(0, 3), slice(0, 4))),
], ids=["single", "stepped", "block"])
def test_setitem_from_an_array_writes_in_place(lhs, rhs, device):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5, 6)), rng.standard_normal((7, 7, 7))
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    pointer = a._handle.ptr()
    a[lhs] = b[rhs]
    x[lhs] = y[rhs]
    assert a._handle.ptr() == pointer
    np.testing.assert_allclose(a.numpy(), x, rtol=1e-6)


def test_setitem_scalar_through_a_permuted_view_reaches_the_base(device):
    x = np.arange(20.0).reshape(4, 5)
    a = nd.array(x, device=device)
    view = a.permute((1, 0))
    view[1::2, 0:3] = -1.0
    x.T[1::2, 0:3] = -1.0
    np.testing.assert_array_equal(a.numpy(), x)
    np.testing.assert_array_equal(view.numpy(), x.T)


def test_flat_plus_equals_writes_through(device):
    """hw4's numeric gradient check perturbs `cached_data.flat[j] += eps` in place."""
    t = ndl.Tensor(np.zeros((2, 3), dtype=np.float32), device=device)
    data = t.realize_cached_data()
    assert data.flat.shape == (6,) and data.flat.size == 6
    data.flat[4] += 0.5
    expected = np.zeros(6, dtype=np.float32)
    expected[4] = 0.5
    np.testing.assert_array_equal(t.numpy().reshape(-1), expected)
    assert data.flat[4].numpy().item() == 0.5


# ---- arithmetic, comparisons, reductions ------------------------------------------------------
COMPARISONS = {"==": (lambda a, b: a == b), "!=": (lambda a, b: a != b),
               ">=": (lambda a, b: a >= b), ">": (lambda a, b: a > b),
               "<": (lambda a, b: a < b), "<=": (lambda a, b: a <= b)}


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons_return_float_zero_or_one(name, device):
    compare = COMPARISONS[name]
    x = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], dtype=np.float32)
    y = np.array([[1.0, 3.0, 2.0], [3.0, 1.0, 5.0]], dtype=np.float32)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    for result, expected in [(compare(a, b), compare(x, y)), (compare(a, 2.0), compare(x, 2.0))]:
        assert result.dtype == "float32"
        np.testing.assert_array_equal(result.numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "maximum", "**"])
def test_elementwise_and_scalar_arithmetic(op, device):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 2.0, (4, 5, 6)).astype(np.float32)
    y = rng.uniform(0.5, 2.0, (4, 5, 6)).astype(np.float32)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    fns = {"+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q,
           "/": lambda p, q: p / q, "maximum": lambda p, q: p.maximum(q) if hasattr(
               p, "maximum") else np.maximum(p, q)}
    if op == "**":
        np.testing.assert_allclose((a ** 1.5).numpy(), x ** 1.5, rtol=1e-6)
        np.testing.assert_allclose((a ** b).numpy(), x ** y, rtol=1e-6)
        return
    fn = fns[op]
    np.testing.assert_allclose(fn(a, b).numpy(), fn(x, y), rtol=1e-6)
    np.testing.assert_allclose(fn(a, 1.5).numpy(), fn(x, np.float32(1.5)), rtol=1e-6)
    if op != "maximum":
        np.testing.assert_allclose(fn(1.5, a).numpy(), fn(np.float32(1.5), x), rtol=1e-6)
    np.testing.assert_allclose((-a).numpy(), -x)


def test_astype_gives_the_dtype_asked_for(device):
    x = np.array([[1.0, 2.5], [-3.0, 1e-30]], dtype=np.float32)
    wide = nd.array(x, device=device).astype("float64")
    assert wide.dtype == "float64"
    np.testing.assert_array_equal(wide.numpy(), x.astype(np.float64))
    assert wide.astype("float32").dtype == "float32"


@pytest.mark.parametrize("name", ["log", "exp", "tanh"])
def test_unary_functions(name, device):
    x = np.random.default_rng(2).uniform(0.1, 3.0, (3, 4)).astype(np.float32)
    out = getattr(nd.array(x, device=device), name)()
    np.testing.assert_allclose(out.numpy(), getattr(np, name)(x.astype(np.float64)),
                               rtol=1e-6)


@pytest.mark.parametrize("shape, axis", [((10,), 0), ((4, 5, 6), 0), ((4, 5, 6), 1),
                                         ((4, 5, 6), 2), ((4, 5, 6), None)], ids=str)
@pytest.mark.parametrize("reduction", ["sum", "max"])
def test_reductions_over_one_axis_or_all(shape, axis, reduction, device):
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    a = nd.array(x, device=device).permute(tuple(reversed(range(len(shape)))))
    expected = getattr(x.T.astype(np.float64), reduction)
    kept = getattr(a, reduction)(axis=axis, keepdims=True)
    np.testing.assert_allclose(kept.numpy(), expected(axis=axis, keepdims=True), rtol=1e-5)
    dropped = getattr(a, reduction)(axis=axis)
    if axis is None:
        assert dropped.shape == (1,)  # the course's convention, unlike NumPy's ()
    np.testing.assert_allclose(dropped.numpy().reshape(-1),
                               np.reshape(expected(axis=axis), -1), rtol=1e-5)


def test_pad_is_zero_padding_like_numpy(device):
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    padding = ((1, 2), (0, 3))
    out = nd.array(x, device=device).pad(padding)
    np.testing.assert_array_equal(out.numpy(), np.pad(x, padding))
    with pytest.raises(ValueError, match="pad"):
        nd.array(x, device=device).pad(((1, 1),))


# ---- matmul and the flat-memory table -----------------------------------------------------------
@pytest.mark.parametrize("m, n, p", [(8, 8, 8), (16, 24, 8), (8, 8, 3), (5, 7, 9), (1, 1, 1)],
                         ids=str)
def test_matmul_with_and_without_tiles(m, n, p, device, monkeypatch):
    """cpu() takes the flat strided GEMM (matmul_strided, as fast as the tiled kernel without
    its tile copies) whatever m, n, p; a module without it falls back to the tiled kernel
    exactly when m, n, p are multiples of its tile."""
    rng = np.random.default_rng(m * n * p)
    x = rng.standard_normal((m, n)).astype(np.float32)
    y = rng.standard_normal((n, p)).astype(np.float32)
    calls = []
    if device == nd.cpu():
        tiled = device.mod.matmul_tiled
        monkeypatch.setattr(device.mod, "matmul_tiled",
                            lambda *args: calls.append(args) or tiled(*args))
    out = nd.array(x, device=device) @ nd.array(y, device=device)
    np.testing.assert_allclose(out.numpy(), x.astype(np.float64) @ y, rtol=1e-5, atol=1e-5)
    tile = nd.cpu().__tile_size__
    expect_tiled = (device == nd.cpu() and not hasattr(device.mod, "matmul_strided")
                    and m % tile == n % tile == p % tile == 0)
    assert bool(calls) == expect_tiled


@pytest.mark.parametrize("a_shape, b_shape", [((64, 1), (1, 50)), ((5, 1), (3, 1, 4)),
                                              ((2, 1, 3, 1), (4, 1, 6)), ((1, 1), (1, 1))],
                         ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_with_inner_size_one_is_each_product(a_shape, b_shape, dtype, device):
    """(..., m, 1) @ (..., 1, p) (a broadcast multiply on xp devices, the GEMM elsewhere):
    NumPy's matmul values (one product per entry) with the batch dimensions broadcast,
    transposed operands (the last conv's input gradient reads W^T) and infinities included
    (the flat NumPy fallback's matmul warns of the overflow; the values are the test)."""
    rng = np.random.default_rng(len(a_shape) + 7 * len(b_shape))
    x = rng.standard_normal(a_shape).astype(dtype)
    y = rng.standard_normal(b_shape[:-2] + b_shape[:-3:-1]).astype(dtype)
    x.flat[0], y.flat[-1] = np.inf, -3e38
    b = nd.array(y, device=device, dtype=dtype).permute(
        tuple(range(len(b_shape) - 2)) + (len(b_shape) - 1, len(b_shape) - 2))
    with np.errstate(over="ignore", invalid="ignore"):
        out = nd.array(x, device=device, dtype=dtype) @ b
        expected = np.matmul(x, np.swapaxes(y, -1, -2))
    assert out.shape == expected.shape and out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("m, n, p", [(1, 1, 1), (2, 2, 3), (1, 2, 1), (3, 3, 3)], ids=str)
def test_matmul_tiled_called_directly_on_tile_blocked_layouts(m, n, p):
    """hw3 calls device.matmul_tiled with NDArray.make outputs, which are uninitialised."""
    device = nd.cpu()
    t = device.__tile_size__
    rng = np.random.default_rng(m + 10 * n + 100 * p)
    a = nd.array(rng.standard_normal((m, n, t, t)), device=device)
    b = nd.array(rng.standard_normal((n, p, t, t)), device=device)
    out = nd.NDArray.make((m, p, t, t), device=device)
    out.fill(123.0)  # whatever the fresh buffer held must not leak into the result
    device.matmul_tiled(a._handle, b._handle, out._handle, m * t, n * t, p * t)
    untile = (lambda blocks, rows, cols:
              blocks.numpy().transpose(0, 2, 1, 3).reshape(rows * t, cols * t))
    expected = untile(a, m, n).astype(np.float64) @ untile(b, n, p)
    np.testing.assert_allclose(untile(out, m, p), expected, rtol=1e-5, atol=1e-5)


def test_flat_memory_functions_called_directly(device):
    """The course interface: every function writes into an `out` buffer it is given."""
    x = np.arange(1.0, 7.0, dtype=np.float32)
    y = np.full(6, 2.0, dtype=np.float32)
    a, b = device.Array(6), device.Array(6)
    device.from_numpy(x, a)
    device.from_numpy(y, b)
    out = device.Array(6)
    table = {"ewise_add": x + y, "ewise_mul": x * y, "ewise_div": x / y,
             "ewise_maximum": np.maximum(x, 3.5), "ewise_eq": (x == 2.0), "ewise_ge": x >= 3}
    for name, expected in table.items():
        operand = b if name in ("ewise_add", "ewise_mul", "ewise_div") else None
        if operand is None:
            scalar = {"ewise_maximum": 3.5, "ewise_eq": 2.0, "ewise_ge": 3.0}[name]
            getattr(device, "scalar_" + name[len("ewise_"):])(a, scalar, out)
        else:
            getattr(device, name)(a, operand, out)
        np.testing.assert_allclose(device.to_numpy(out, (6,), (1,), 0),
                                   expected.astype(np.float32), err_msg=name)
    device.scalar_power(a, 2.0, out)
    np.testing.assert_allclose(device.to_numpy(out, (6,), (1,), 0), x ** 2)
    device.ewise_log(a, out)
    np.testing.assert_allclose(device.to_numpy(out, (6,), (1,), 0), np.log(x), rtol=1e-6)
    sums, maxima = device.Array(2), device.Array(2)
    device.reduce_sum(a, sums, 3)
    device.reduce_max(a, maxima, 3)
    np.testing.assert_allclose(device.to_numpy(sums, (2,), (1,), 0), [6.0, 15.0])
    np.testing.assert_allclose(device.to_numpy(maxima, (2,), (1,), 0), [3.0, 6.0])
    # (2, 3) transposed: shape (3, 2), strides (1, 3)
    device.compact(a, out, (3, 2), (1, 3), 0)
    np.testing.assert_array_equal(device.to_numpy(out, (3, 2), (2, 1), 0),
                                  x.reshape(2, 3).T)
    device.fill(out, 0.0)
    device.scalar_setitem(2, 9.0, out, (2,), (3,), 1)
    np.testing.assert_array_equal(device.to_numpy(out, (6,), (1,), 0), [0, 9, 0, 0, 9, 0])
    device.ewise_setitem(b, out, (2,), (2,), 2)
    np.testing.assert_array_equal(device.to_numpy(out, (6,), (1,), 0), [0, 9, 2, 0, 2, 0])
    mm_out = device.Array(4)
    device.matmul(a, b, mm_out, 2, 3, 2)
    np.testing.assert_allclose(device.to_numpy(mm_out, (2, 2), (2, 1), 0),
                               x.reshape(2, 3) @ y.reshape(3, 2))


# ---- dtypes and devices -------------------------------------------------------------------------
def test_float64_arrays_keep_their_dtype(device):
    x = np.random.default_rng(4).standard_normal((3, 4))
    a = nd.array(x, dtype="float64", device=device)
    assert a.dtype == "float64"
    out = (a * 2.0 + a).exp().sum(axis=1)
    assert out.dtype == "float64"
    np.testing.assert_allclose(out.numpy(), np.exp(3 * x).sum(axis=1), rtol=1e-13)
    assert nd.array(x, device=device).dtype == "float32"  # the course default


def test_device_names_equality_and_rng():
    assert str(nd.cpu()) == "cpu()" and str(nd.cpu_numpy()) == "cpu_numpy()"
    assert str(nd.cuda()) == "cuda()"
    assert nd.cpu() == nd.cpu() and nd.cpu() != nd.cpu_numpy()
    assert nd.default_device() == nd.cpu_numpy()
    assert {str(d) for d in nd.all_devices()} == {"cpu()", "cuda()", "cpu_numpy()"}
    np.random.seed(5)
    drawn = nd.cpu().rand(2, 3)
    np.random.seed(5)
    np.testing.assert_array_equal(drawn.numpy(), np.random.rand(2, 3).astype(np.float32))
    hot = nd.cpu_numpy().one_hot(4, np.array([2, 0]))
    np.testing.assert_array_equal(hot.numpy(), np.eye(4, dtype=np.float32)[[2, 0]])


@pytest.mark.skipif(load_cupy() is not None, reason="a GPU is visible: cuda() is enabled")
def test_cuda_is_constructible_but_disabled_without_a_gpu():
    device = nd.cuda()
    assert not device.enabled()
    with pytest.raises(RuntimeError, match="CuPy"):
        nd.array(np.ones(3), device=device)
    with pytest.raises(RuntimeError, match="CuPy"):
        ndl.Tensor(np.ones(3), device=device)
