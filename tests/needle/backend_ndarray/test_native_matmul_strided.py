"""matmul_strided: the native GEMM over strided operand views, and cpu()'s NDArray @ on it.

Row-major views (with any row stride), transposed views (packed straight from the storage)
and other layouts (compacted inside) must give bit for bit what matmul gives on compacted
copies, for every GEMM variant, one and two threads, float32 and float64, and sizes around
the blocking's edges (KC = 256, the 6/14-row and 8-32-column micro-tiles, the small and
narrow kernels). Random values, so a packing that reorders a sum or drops an element shows.
"""
import numpy as np
import pytest

from needle import backend_ndarray as nd

native = pytest.importorskip("needle.backend_ndarray.ndarray_backend_cpu",
                             reason="native cpu backend not built")
if not hasattr(native, "matmul_strided"):
    pytest.skip("native module built before matmul_strided", allow_module_level=True)

LAYOUTS = ["row", "trans", "row_sliced", "trans_sliced", "stepped"]
SHAPES = [(1, 1, 1), (5, 7, 9), (2, 40, 3), (37, 19, 50), (64, 300, 96), (29, 513, 45),
          (100, 64, 1)]


def put(x, dtype):
    buffer = native.Array(x.size, dtype=dtype)
    native.from_numpy(np.ascontiguousarray(x, dtype=dtype).reshape(-1), buffer)
    return buffer


def strided_operand(rng, rows, cols, layout, dtype):
    """(storage, strides, offset, view): a (rows, cols) view of a flat storage in `layout`."""
    if layout == "row":
        storage, strides, offset = rng.standard_normal(rows * cols), (cols, 1), 0
    elif layout == "trans":
        storage, strides, offset = rng.standard_normal(rows * cols), (1, rows), 0
    elif layout == "row_sliced":  # x[:, 3:3 + cols] of a wider matrix
        ld = cols + 5
        storage, strides, offset = rng.standard_normal(rows * ld + 3), (ld, 1), 3
    elif layout == "trans_sliced":  # x[2:2 + cols, :].T of a taller matrix
        ld = rows + 4
        storage, strides, offset = rng.standard_normal(cols * ld + 2), (1, ld), 2
    else:  # every other element: neither layout, compacted inside
        storage, strides, offset = rng.standard_normal(2 * rows * cols), (2 * cols, 2), 0
    storage = storage.astype(dtype)
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], (rows, cols),
                                           (strides[0] * item, strides[1] * item))
    return storage, strides, offset, view


def run_strided(a, b, m, n, p, dtype):
    (sa, a_strides, a_offset, _), (sb, b_strides, b_offset, _) = a, b
    out = native.Array(m * p, dtype)
    native.fill(out, np.nan)  # overwritten
    native.matmul_strided(put(sa, dtype), put(sb, dtype), out, m, n, p, a_strides, a_offset,
                          b_strides, b_offset)
    return native.to_numpy(out, (m, p), (p, 1), 0)


def run_compacted(a_view, b_view, m, n, p, dtype):
    out = native.Array(m * p, dtype)
    native.matmul(put(a_view, dtype), put(b_view, dtype), out, m, n, p)
    return native.to_numpy(out, (m, p), (p, 1), 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("a_layout", LAYOUTS)
@pytest.mark.parametrize("b_layout", LAYOUTS)
@pytest.mark.parametrize("m, n, p", SHAPES, ids=str)
def test_matmul_strided_is_bitwise_matmul_of_compacted_copies(m, n, p, a_layout, b_layout,
                                                              dtype, isa, threads):
    rng = np.random.default_rng(m * 1000 + n * 10 + p)
    a = strided_operand(rng, m, n, a_layout, dtype)
    b = strided_operand(rng, n, p, b_layout, dtype)
    got = run_strided(a, b, m, n, p, dtype)
    np.testing.assert_array_equal(got, run_compacted(a[3], b[3], m, n, p, dtype))
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, a[3].astype(np.float64) @ b[3].astype(np.float64),
                               rtol=tol, atol=tol * n)


@pytest.mark.parametrize("m, n, p", [(3, 0, 4), (0, 5, 4), (4, 5, 0)], ids=str)
def test_matmul_strided_empty_dimensions(m, n, p):
    out = native.Array(max(m * p, 1), "float32")
    native.fill(out, np.nan)
    a = native.Array(max(m * n, 1), "float32")
    b = native.Array(max(n * p, 1), "float32")
    native.matmul_strided(a, b, out, m, n, p, (1, max(m, 1)), 0, (1, max(n, 1)), 0)
    if m * p:
        np.testing.assert_array_equal(native.to_numpy(out, (m, p), (p, 1), 0), 0)


def test_matmul_strided_rejects_views_outside_the_buffer():
    a, b, out = native.Array(12, "float32"), native.Array(12, "float32"), native.Array(9, "float32")
    with pytest.raises(IndexError, match="matmul_strided"):
        native.matmul_strided(a, b, out, 3, 4, 3, (1, 4), 0, (3, 1), 0)  # a reaches 12
    with pytest.raises(ValueError, match="2 entries"):
        native.matmul_strided(a, b, out, 3, 4, 3, (4, 1, 1), 0, (3, 1), 0)


# ---- NDArray @ on cpu() -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m, n, p", [(64, 48, 32), (37, 300, 21), (8, 8, 8)], ids=str)
def test_cpu_matmul_reads_transposed_operands_without_compacting(m, n, p, dtype, monkeypatch):
    """conv's im2col(x)^T @ g and g @ W^T: no compact() copy, no tile copies, and the same
    bits as compacting first."""
    device = nd.cpu()
    rng = np.random.default_rng(m + n + p)
    at = rng.standard_normal((n, m)).astype(dtype)
    bt = rng.standard_normal((p, n)).astype(dtype)
    a = nd.array(at, device=device, dtype=dtype).permute((1, 0))
    b = nd.array(bt, device=device, dtype=dtype).permute((1, 0))
    expected = (a.compact() @ b.compact()).numpy()
    calls = []
    for name in ("compact", "matmul_tiled", "matmul"):
        original = getattr(device.mod, name)
        monkeypatch.setattr(device.mod, name,
                            lambda *args, _n=name, _f=original: calls.append(_n) or _f(*args))
    got = a @ b
    assert calls == []
    assert got.shape == (m, p) and got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_allclose(got.numpy(), at.T.astype(np.float64) @ bt.T, rtol=1e-4,
                               atol=1e-4 * n)


def test_cpu_matmul_of_sliced_and_broadcast_views():
    device = nd.cpu()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 70)).astype(np.float32)
    y = rng.standard_normal((30, 1)).astype(np.float32)
    a = nd.array(x, device=device)[3:33, 10:60]  # row-major, row stride 70, offset
    b = nd.array(y, device=device).broadcast_to((30, 20))  # stride 0: compacted inside
    got = a[:, :30] @ b
    np.testing.assert_allclose(got.numpy(), x[3:33, 10:40].astype(np.float64) @
                               np.broadcast_to(y, (30, 20)), rtol=1e-5, atol=1e-4)
