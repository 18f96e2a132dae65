"""The native C++ cpu() module, function by function, against the NumPy flat-memory table.

Both implement the course's flat-memory interface (COURSE_API.md section 10.3), so every
function is called the same way on both and the buffers compared. Skips when the module is
not built (`cmake -S . -B build && cmake --build build -j2`, or `pip install -e .` with CMake
and a C++ compiler present).
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from needle.backend_ndarray.ndarray_backend_numpy import make_numpy_backend
from tests.strategies import permutations, shapes

native = pytest.importorskip("needle.backend_ndarray.ndarray_backend_cpu",
                             reason="native cpu backend not built")
REFERENCE = make_numpy_backend("cpu")

FLOATS = ["float32", "float64"]
DTYPES = ["bool", "uint8", "int32", "int64", "float32", "float64"]
# ulp-level differences between C++ and NumPy transcendental functions
UNARY_RTOL = {"float32": 2e-6, "float64": 1e-13}


def put(mod, x, dtype=None):
    """A flat buffer of `mod` holding x (C order)."""
    x = np.asarray(x)
    buffer = mod.Array(x.size, dtype=dtype or str(x.dtype))
    mod.from_numpy(np.ascontiguousarray(x), buffer)
    return buffer


def get(mod, buffer, shape=None):
    shape = (buffer.size,) if shape is None else tuple(shape)
    strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    return mod.to_numpy(buffer, shape, strides, 0)


def both(x, dtype=None):
    return put(native, x, dtype), put(REFERENCE, x, dtype)


@pytest.fixture
def threads():
    """Run with `n` pool threads, even on a one-CPU machine, then restore the default."""
    default = native.num_threads()
    yield native.set_num_threads
    native.set_num_threads(default)


def values(dtype, shape, low=-3.0, high=3.0):
    if dtype == "bool":
        return hnp.arrays(np.bool_, shape)
    if dtype in ("uint8", "int32", "int64"):
        low = 0 if dtype == "uint8" else -100
        return hnp.arrays(dtype, shape, elements=st.integers(low, 100))
    if dtype == "float32":  # bounds must be float32 numbers
        low, high = float(np.float32(low)), float(np.float32(high))
    width = 32 if dtype == "float32" else 64
    elements = st.floats(low, high, width=width, allow_subnormal=False)
    return hnp.arrays(dtype, shape, elements=elements)


# ---- Array ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_array_has_size_dtype_and_an_aligned_pointer(dtype):
    buffers = [native.Array(n, dtype=dtype) for n in (0, 1, 7, 1000)]
    assert [b.size for b in buffers] == [0, 1, 7, 1000]
    assert all(b.dtype == dtype for b in buffers)
    pointers = [b.ptr() for b in buffers]
    assert all(isinstance(p, int) and p % 64 == 0 for p in pointers)
    assert len(set(pointers)) == len(pointers)


def test_module_attributes_and_defaults():
    assert native.__device_name__ == "cpu"
    assert native.__tile_size__ == 8
    assert native.Array(3).dtype == "float32"
    assert native.Array(3, np.float64).dtype == "float64"
    assert native.num_threads() >= 1
    with pytest.raises(TypeError, match="unsupported dtype 'float16'"):
        native.Array(3, "float16")


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_numpy_and_to_numpy_round_trip_every_dtype(dtype):
    x = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    a = put(native, x)
    back = native.to_numpy(a, (2, 3, 4), (12, 4, 1), 0)
    assert back.dtype == x.dtype and back.flags.owndata
    np.testing.assert_array_equal(back, x)
    back[0, 0, 0] = 1  # a copy: the buffer is untouched
    assert native.to_numpy(a, (1,), (1,), 0)[0] == x.flat[0]
    assert native.to_numpy(a, (), (), 5).shape == ()


def test_from_numpy_converts_dtype_and_layout_like_the_reference():
    x = np.arange(12.0).reshape(3, 4).T  # float64, Fortran order
    for dtype in ("float32", "int32"):
        got, want = both(np.ascontiguousarray(x), dtype)
        native.from_numpy(x.copy(order="C"), got)
        np.testing.assert_array_equal(get(native, got), get(REFERENCE, want))
    with pytest.raises(ValueError, match="from_numpy"):
        native.from_numpy(np.ones(5), native.Array(4))


# ---- strided views: compact, to_numpy, setitem ------------------------------------------------
@st.composite
def views(draw, broadcast=True):
    """(base array, view): a permuted, sliced (steps may be negative), maybe broadcast view."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes(min_dims=1, max_dims=6, max_side=4), label="shape")
    base = draw(values(dtype, shape), label="base")
    view = np.transpose(base, draw(permutations(len(shape)), label="permutation"))
    index = []
    for side in view.shape:
        step = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
        first = draw(st.integers(0, side - 1))
        last = draw(st.integers(0, side - 1))
        lo, hi = min(first, last), max(first, last)
        index.append(slice(lo, hi + 1, step) if step > 0 else slice(hi, lo - 1 if lo else None,
                                                                    step))
    view = view[tuple(index)]
    if broadcast and draw(st.booleans()):
        view = np.broadcast_to(view[:1], (draw(st.integers(1, 3)),) + view.shape[1:])
    return base, view


def layout(base, view):
    """The view's (shape, element strides, element offset) over base's buffer."""
    item = base.itemsize
    offset = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // item
    return view.shape, tuple(s // item for s in view.strides), offset


@given(case=views())
def test_compact_and_to_numpy_of_any_view_match_the_reference(case):
    base, view = case
    shape, strides, offset = layout(base, view)
    a_native, a_reference = both(base)
    out_native, out_reference = native.Array(view.size, base.dtype), \
        REFERENCE.Array(view.size, base.dtype)
    native.compact(a_native, out_native, shape, strides, offset)
    REFERENCE.compact(a_reference, out_reference, shape, strides, offset)
    np.testing.assert_array_equal(get(native, out_native, shape), view)
    np.testing.assert_array_equal(get(native, out_native), get(REFERENCE, out_reference))
    np.testing.assert_array_equal(native.to_numpy(a_native, shape, strides, offset), view)


@given(case=views(broadcast=False), data=st.data())
def test_setitem_through_any_view_matches_the_reference(case, data):
    base, view = case
    shape, strides, offset = layout(base, view)
    new = data.draw(values(str(base.dtype), view.shape), label="new")
    scalar = new.flat[0].item()
    for setitem in ("ewise", "scalar"):
        buffers = both(base)
        source = both(new)
        for mod, buffer, src in zip((native, REFERENCE), buffers, source):
            if setitem == "ewise":
                mod.ewise_setitem(src, buffer, shape, strides, offset)
            else:
                mod.scalar_setitem(view.size, scalar, buffer, shape, strides, offset)
        np.testing.assert_array_equal(get(native, buffers[0]), get(REFERENCE, buffers[1]))


def test_views_outside_the_buffer_raise_instead_of_reading_memory():
    a = put(native, np.arange(6.0, dtype=np.float32))
    with pytest.raises(IndexError, match="compact"):
        native.compact(a, native.Array(6), (2, 3), (3, 1), 1)
    with pytest.raises(IndexError, match="to_numpy"):
        native.to_numpy(a, (3,), (-1,), 1)
    with pytest.raises(IndexError, match="scalar_setitem"):
        native.scalar_setitem(3, 0.0, a, (3,), (3,), 0)


def test_large_copies_on_the_thread_pool(threads):
    threads(3)
    x = np.random.default_rng(0).standard_normal((64, 80, 96)).astype(np.float32)
    view = x.transpose(2, 0, 1)[:, ::-1, 1::2]
    shape, strides, offset = layout(x, view)
    out = native.Array(view.size)
    native.compact(put(native, x), out, shape, strides, offset)
    np.testing.assert_array_equal(get(native, out, shape), view)
    buffer = put(native, x)
    native.scalar_setitem(view.size, 7.0, buffer, shape, strides, offset)
    expected = x.copy()
    expected.transpose(2, 0, 1)[:, ::-1, 1::2] = 7.0
    np.testing.assert_array_equal(get(native, buffer, x.shape), expected)


# ---- elementwise --------------------------------------------------------------------------------
BINARY = ["add", "mul", "div", "maximum", "eq", "ge"]


@given(data=st.data(), dtype=st.sampled_from(FLOATS), name=st.sampled_from(BINARY))
def test_ewise_and_scalar_functions_match_the_reference(data, dtype, name):
    shape = data.draw(shapes(max_dims=3, max_side=40), label="shape")
    x = data.draw(values(dtype, shape), label="x")
    y = data.draw(values(dtype, shape, 0.25, 3.0), label="y")
    if name in ("eq", "ge"):  # make ties likely
        y = np.where(data.draw(hnp.arrays(np.bool_, shape), label="tie"), x, y)
    scalar = data.draw(st.sampled_from([0.5, -2.0, 3, 0, x.flat[0].item()]), label="scalar")
    (xn, xr), (yn, yr) = both(x), both(y)
    for kind, args in (("ewise", ((xn, yn), (xr, yr))), ("scalar", ((xn, scalar), (xr, scalar)))):
        outs = native.Array(x.size, dtype), REFERENCE.Array(x.size, dtype)
        with np.errstate(all="ignore"):  # x / 0 gives inf or nan on both
            for mod, operands, out in zip((native, REFERENCE), args, outs):
                getattr(mod, f"{kind}_{name}")(*operands, out)
        np.testing.assert_array_equal(get(native, outs[0]), get(REFERENCE, outs[1]),
                                      err_msg=f"{kind}_{name}")


@given(data=st.data(), dtype=st.sampled_from(FLOATS),
       name=st.sampled_from(["log", "exp", "tanh", "power"]))
def test_unary_functions_and_power_match_the_reference(data, dtype, name):
    shape = data.draw(shapes(max_dims=2, max_side=64), label="shape")
    low, high = {"log": (1e-6, 1e6), "exp": (-90.0, 80.0), "tanh": (-12.0, 12.0),
                 "power": (0.01, 10.0)}[name]
    x = data.draw(values(dtype, shape, low, high), label="x")
    (xn, xr) = both(x)
    outs = native.Array(x.size, dtype), REFERENCE.Array(x.size, dtype)
    exponent = data.draw(st.sampled_from([2, 2.0, 0.5, -1, 1, 0, 1.5, 3, -0.5]), label="power")
    for mod, a, out in zip((native, REFERENCE), (xn, xr), outs):
        if name == "power":
            mod.scalar_power(a, exponent, out)
        else:
            getattr(mod, "ewise_" + name)(a, out)
    np.testing.assert_allclose(get(native, outs[0]), get(REFERENCE, outs[1]),
                               rtol=UNARY_RTOL[dtype], atol=0)
    if name == "power":  # elementwise exponents too: whole and fractional, either sign
        exponents = data.draw(values(dtype, shape, -3.0, 3.0), label="exponents")
        exponents[::2] = np.round(exponents[::2])
        (en, er) = both(exponents)
        for mod, a, b, out in zip((native, REFERENCE), (xn, xr), (en, er), outs):
            mod.ewise_power(a, b, out)
        np.testing.assert_allclose(get(native, outs[0]), get(REFERENCE, outs[1]),
                                   rtol=UNARY_RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values_follow_numpy(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, 1e-30, 100.0, -120.0], dtype=dtype)
    y = np.array([1.0, nan, 0.0, -0.0, 0.0, nan, -1.0, 0.0, inf, nan], dtype=dtype)
    (xn, xr), (yn, yr) = both(x), both(y)
    with np.errstate(all="ignore"):
        for name in ("ewise_log", "ewise_exp", "ewise_tanh"):
            outs = native.Array(x.size, dtype), REFERENCE.Array(x.size, dtype)
            getattr(native, name)(xn, outs[0])
            getattr(REFERENCE, name)(xr, outs[1])
            np.testing.assert_allclose(get(native, outs[0]), get(REFERENCE, outs[1]),
                                       rtol=UNARY_RTOL[dtype], err_msg=name)
        for name in ("ewise_maximum", "ewise_eq", "ewise_ge", "ewise_div", "ewise_mul",
                     "ewise_power"):
            outs = native.Array(x.size, dtype), REFERENCE.Array(x.size, dtype)
            getattr(native, name)(xn, yn, outs[0])
            getattr(REFERENCE, name)(xr, yr, outs[1])
            np.testing.assert_array_equal(get(native, outs[0]), get(REFERENCE, outs[1]),
                                          err_msg=name)
        sums, maxima = native.Array(2, dtype), native.Array(2, dtype)
        native.reduce_sum(xn, sums, 5)
        native.reduce_max(xn, maxima, 5)
        np.testing.assert_array_equal(get(native, maxima), [nan, 100.0])
        np.testing.assert_array_equal(get(native, sums), [nan, x[5:].sum()])


def test_mixed_dtypes_cast_to_the_output_like_ndarray_needs():
    """x * bool_mask into a float out; integer labels compared into float 0/1 outputs."""
    x = np.linspace(-2, 2, 12).astype(np.float32)
    mask = x > 0
    labels = np.arange(12, dtype=np.int64) % 3
    for mod in (native, REFERENCE):
        out = mod.Array(12)
        mod.ewise_mul(put(mod, x), put(mod, mask), out)
        np.testing.assert_array_equal(get(mod, out), x * mask)
        mod.ewise_add(put(mod, x), put(mod, labels.astype(np.uint8)), out)
        np.testing.assert_array_equal(get(mod, out), x + labels.astype(np.float32))
        eq = mod.Array(12, "float32")
        mod.scalar_eq(put(mod, labels), 2, eq)
        np.testing.assert_array_equal(get(mod, eq), (labels == 2).astype(np.float32))
        mod.scalar_ge(put(mod, labels), 1.5, eq)
        np.testing.assert_array_equal(get(mod, eq), (labels >= 1.5).astype(np.float32))
        ints = mod.Array(12, "int64")
        mod.scalar_mul(put(mod, labels), 3, ints)
        np.testing.assert_array_equal(get(mod, ints), labels * 3)
        mod.scalar_power(put(mod, labels), 3, ints)
        np.testing.assert_array_equal(get(mod, ints), labels ** 3)


@pytest.mark.parametrize("call", [
    lambda mod: mod.ewise_div(put(mod, np.ones(3, np.int32)), put(mod, np.ones(3, np.int32)),
                              mod.Array(3, "int32")),
    lambda mod: mod.scalar_add(put(mod, np.ones(3, np.int32)), 0.5, mod.Array(3, "int32")),
    lambda mod: mod.ewise_add(put(mod, np.ones(3)), put(mod, np.ones(3)),
                              mod.Array(3, "int64")),
    lambda mod: mod.ewise_exp(put(mod, np.ones(3, np.int64)), mod.Array(3, "int64")),
], ids=["int-div", "int-plus-float-scalar", "float-into-int", "int-exp"])
def test_casts_numpy_refuses_are_type_errors_on_both(call):
    for mod in (native, REFERENCE):
        with pytest.raises(TypeError):
            call(mod)


def test_operand_size_mismatch_raises():
    with pytest.raises(ValueError, match="ewise_add"):
        native.ewise_add(native.Array(3), native.Array(4), native.Array(3))


def test_large_elementwise_on_the_thread_pool(threads):
    threads(3)
    x = np.random.default_rng(1).uniform(0.5, 2.0, 1 << 19).astype(np.float32)
    xn, out = put(native, x), native.Array(x.size)
    for name in ("ewise_exp", "ewise_log", "ewise_tanh"):
        getattr(native, name)(xn, out)
        np.testing.assert_allclose(get(native, out), getattr(np, name[6:])(x), rtol=2e-6)
    native.ewise_add(xn, xn, out)
    np.testing.assert_array_equal(get(native, out), x + x)
    native.fill(out, 1.5)
    assert np.all(get(native, out) == 1.5)


# ---- matmul -------------------------------------------------------------------------------------
MATMUL_SHAPES = [(1, 1, 1), (2, 3, 4), (5, 7, 9), (1, 300, 40), (33, 17, 1), (200, 50, 3),
                 (6, 256, 16), (7, 257, 17), (97, 300, 130), (64, 64, 64), (13, 520, 3100)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m, n, p", MATMUL_SHAPES, ids=str)
def test_matmul_blocked_and_small_paths(m, n, p, dtype):
    """Shapes around every path: tiny, narrow (p < 4), one row, edge tiles, several K blocks."""
    rng = np.random.default_rng(m * 1000 + n + p)
    x = rng.standard_normal((m, n)).astype(dtype)
    y = rng.standard_normal((n, p)).astype(dtype)
    out = native.Array(m * p, dtype)
    native.fill(out, np.nan)  # matmul overwrites out
    native.matmul(put(native, x), put(native, y), out, m, n, p)
    expected = x.astype(np.float64) @ y.astype(np.float64)
    scale = np.sqrt(n) * (1e-5 if dtype == "float32" else 1e-13)
    np.testing.assert_allclose(get(native, out, (m, p)), expected, rtol=0, atol=scale * 4)


def test_matmul_with_an_empty_inner_dimension_is_zero():
    out = native.Array(6)
    native.fill(out, 3.0)
    native.matmul(native.Array(0), native.Array(0), out, 2, 0, 3)
    assert np.all(get(native, out) == 0)


@pytest.mark.parametrize("count", [1, 3])
def test_matmul_on_the_thread_pool(threads, count):
    threads(count)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((150, 260)), rng.standard_normal((260, 170))
    out = native.Array(150 * 170, "float64")
    native.matmul(put(native, x), put(native, y), out, 150, 260, 170)
    np.testing.assert_allclose(get(native, out, (150, 170)), x @ y, rtol=0, atol=1e-11)


@given(dtype=st.sampled_from(FLOATS), tiles=st.tuples(*[st.integers(1, 4)] * 3),
       seed=st.integers(0, 2 ** 16))
def test_matmul_tiled_overwrites_out_with_the_tile_product(dtype, tiles, seed):
    t = native.__tile_size__
    m, n, p = (k * t for k in tiles)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m // t, n // t, t, t)).astype(dtype)
    b = rng.standard_normal((n // t, p // t, t, t)).astype(dtype)
    results = []
    for mod in (native, REFERENCE):
        out = mod.Array(m * p, dtype)
        mod.fill(out, 123.0)
        mod.matmul_tiled(put(mod, a), put(mod, b), out, m, n, p)
        results.append(get(mod, out))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(results[0], results[1], rtol=tol, atol=tol)


# ---- reductions ---------------------------------------------------------------------------------
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_reductions_over_contiguous_groups_match_the_reference(data, dtype):
    groups = data.draw(st.integers(1, 20), label="groups")
    size = data.draw(st.sampled_from([1, 2, 7, 8, 9, 129, 300]), label="reduce_size")
    x = data.draw(values(dtype, (groups * size,)), label="x")
    (xn, xr) = both(x)
    for name in ("reduce_sum", "reduce_max"):
        outs = native.Array(groups, dtype), REFERENCE.Array(groups, dtype)
        getattr(native, name)(xn, outs[0], size)
        getattr(REFERENCE, name)(xr, outs[1], size)
        tol = 1e-6 if dtype == "float32" else 1e-14
        np.testing.assert_allclose(get(native, outs[0]), get(REFERENCE, outs[1]),
                                   rtol=tol, atol=tol * math.sqrt(size), err_msg=name)


def test_float32_sums_are_pairwise_like_numpy():
    x = np.full(1 << 20, 0.1, dtype=np.float32)
    out = native.Array(1)
    native.reduce_sum(put(native, x), out, x.size)
    assert get(native, out)[0] == pytest.approx(float(x.sum()), rel=1e-6)
