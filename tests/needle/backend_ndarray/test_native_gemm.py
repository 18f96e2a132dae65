"""The native module's GEMM variants (baseline, AVX2, AVX-512) against NumPy.

Every variant this CPU can run is forced in turn (set_gemm_isa), so the AVX-512 path and the
older ones are all covered on an AVX-512 machine. The shapes sit around each variant's edges:
micro-tiles of 6 or 14 rows by 2 vectors (8 to 32 columns), KC = 256 blocks of k, NC = 3072
column blocks, B panels of 8 MB, one row, one column, k = 0 and 1, and tiled (8x8) operands.
Integer-valued inputs keep every product and partial sum exact in float32 and float64, so
the comparisons are exact whatever the summation order; a random-valued case checks rounding.
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from needle import backend_ndarray as nd

from .conftest import ISAS

native = pytest.importorskip("needle.backend_ndarray.ndarray_backend_cpu",
                             reason="native cpu backend not built")

FLOATS = ["float32", "float64"]
TILE = native.__tile_size__


def put(x, dtype):
    buffer = native.Array(x.size, dtype=dtype)
    native.from_numpy(np.ascontiguousarray(x, dtype=dtype), buffer)
    return buffer


def integers(rng, shape, dtype):
    """Small integers as floats: products and sums exact (|sum| < 2**24 for these sizes)."""
    return rng.integers(-3, 4, size=shape).astype(dtype)


def flat_matmul(a, b, dtype):
    (m, n), p = a.shape, b.shape[1]
    out = native.Array(m * p, dtype)
    native.fill(out, np.nan)  # matmul overwrites out
    native.matmul(put(a, dtype), put(b, dtype), out, m, n, p)
    return native.to_numpy(out, (m, p), (p, 1), 0)


def to_tiles(x):
    rows, cols = x.shape
    return x.reshape(rows // TILE, TILE, cols // TILE, TILE).transpose(0, 2, 1, 3)


def tiled_matmul(a, b, dtype):
    (m, n), p = a.shape, b.shape[1]
    out = native.Array(m * p, dtype)
    native.fill(out, np.nan)
    native.matmul_tiled(put(to_tiles(a), dtype), put(to_tiles(b), dtype), out, m, n, p)
    t = TILE
    tiles = native.to_numpy(out, (m // t, p // t, t, t), (p * t, t * t, t, 1), 0)
    return tiles.transpose(0, 2, 1, 3).reshape(m, p)


# (m, n, p): rows, inner dimension, columns
FLAT_SHAPES = [
    (13, 255, 31), (14, 256, 32), (15, 257, 33), (27, 100, 47), (29, 64, 65),  # tile edges
    (6, 300, 16), (7, 300, 17), (12, 300, 8), (28, 50, 96),
    (1, 300, 40), (1, 1, 1000),    # one row
    (300, 40, 1), (200, 50, 3),    # one or a few columns
    (300, 1, 40), (40, 1, 300),    # k = 1
    (30, 5000, 40),                # many KC blocks and a tail
    (30, 40, 3200),                # two NC column blocks
    (333, 1025, 17), (97, 300, 130), (64, 100, 1000),
]
TILED_SHAPES = [
    (8, 8, 8), (16, 8, 24),        # the direct tile kernel
    (120, 264, 136), (8, 520, 16), (224, 64, 8), (112, 2056, 40), (64, 1032, 72),
    (16, 16, 3208),                # two NC column blocks
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m, n, p", FLAT_SHAPES, ids=str)
def test_flat_matmul_is_exact_on_integers(isa, threads, m, n, p, dtype):
    rng = np.random.default_rng(m * 7919 + n * 31 + p)
    a, b = integers(rng, (m, n), dtype), integers(rng, (n, p), dtype)
    np.testing.assert_array_equal(flat_matmul(a, b, dtype),
                                  a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m, n, p", TILED_SHAPES, ids=str)
def test_tiled_matmul_is_exact_on_integers(isa, threads, m, n, p, dtype):
    rng = np.random.default_rng(m * 7919 + n * 31 + p)
    a, b = integers(rng, (m, n), dtype), integers(rng, (n, p), dtype)
    np.testing.assert_array_equal(tiled_matmul(a, b, dtype),
                                  a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_inner_dimension_gives_zeros(isa, dtype):
    out = flat_matmul(np.zeros((5, 0), dtype), np.zeros((0, 7), dtype), dtype)
    np.testing.assert_array_equal(out, np.zeros((5, 7)))


def test_a_b_panel_larger_than_8_mb_is_split():
    """n * p = 70000 * 32 float32 is 9 MB of packed B: two panels, C accumulated across."""
    rng = np.random.default_rng(0)
    a, b = integers(rng, (20, 70000), "float32"), integers(rng, (70000, 32), "float32")
    np.testing.assert_array_equal(flat_matmul(a, b, "float32"),
                                  a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("dtype", FLOATS)
def test_random_values_round_like_a_float_sum(isa, dtype):
    """The DCGAN's shape class (many rows, k > KC) in random values: error of a float sum."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((448, 1000)).astype(dtype)
    b = rng.standard_normal((1000, 136)).astype(dtype)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    atol = np.sqrt(1000) * (2e-6 if dtype == "float32" else 4e-15) * 4
    np.testing.assert_allclose(flat_matmul(a, b, dtype), expected, rtol=0, atol=atol)
    np.testing.assert_allclose(tiled_matmul(a, b, dtype), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", FLOATS)
def test_inf_and_nan_reach_only_their_rows_and_columns(isa, dtype):
    """Zero padding in the packed strips must not leak 0 * inf = nan into C."""
    rng = np.random.default_rng(2)
    a, b = integers(rng, (29, 300), dtype), integers(rng, (300, 47), dtype)
    a[3, 7], a[20, 250], b[5, 40] = np.inf, np.nan, -np.inf
    with np.errstate(invalid="ignore"):
        expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(flat_matmul(a, b, dtype), expected)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m, n, p", [(48, 264, 40), (45, 70, 33)], ids=str)
def test_ndarray_matmul_of_views_on_the_native_device(isa, m, n, p, dtype):
    """Transposed and sliced NDArrays on cpu() (compacted, then tiled or flat) match NumPy."""
    rng = np.random.default_rng(m + n + p)
    x, y = integers(rng, (n + 3, m + 2), dtype), integers(rng, (p, n), dtype)
    a = nd.array(x, device=ndl.cpu()).permute((1, 0))[1:m + 1, 2:n + 2]  # x.T[1:, 2:]
    b = nd.array(y, device=ndl.cpu()).permute((1, 0))                    # y.T
    expected = x.T[1:m + 1, 2:n + 2].astype(np.int64) @ y.T.astype(np.int64)
    np.testing.assert_array_equal((a @ b).numpy(), expected)


def test_default_is_the_widest_variant_and_bad_names_are_refused():
    widest = ISAS[0]
    if os.environ.get("NEEDLE_GEMM_ISA") in (None, "", "auto"):
        before = native.gemm_isa()
        native.set_gemm_isa("auto")
        assert native.gemm_isa() == widest
        native.set_gemm_isa(before)
    with pytest.raises(ValueError, match="expected auto, baseline, avx2 or avx512"):
        native.set_gemm_isa("sse9")
    for name in {"avx2", "avx512"} - set(ISAS):
        with pytest.raises(ValueError, match="has no " + name):
            native.set_gemm_isa(name)


def run_with_gemm_isa(value, code):
    """`code` run by a fresh interpreter in the repository root with NEEDLE_GEMM_ISA=value."""
    env = dict(os.environ, NEEDLE_GEMM_ISA=value)
    root = pathlib.Path(__file__).resolve().parents[3]
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                          capture_output=True, text=True, check=True)


@pytest.mark.parametrize("name", ISAS)
def test_the_environment_variable_picks_the_starting_variant(name):
    result = run_with_gemm_isa(name, "from needle.backend_ndarray import "
                                     "ndarray_backend_cpu as m; print(m.gemm_isa())")
    assert result.stdout.strip() == name


@pytest.mark.skipif(not (native.__avx512__ and native.__avx2__), reason="needs AVX-512 and AVX2")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m, n, p", [(97, 600, 130), (448, 1000, 136), (64, 100, 1000)], ids=str)
def test_avx512_rounds_exactly_as_avx2(m, n, p, dtype):
    """Both run one FMA chain per element over each KC block, blocks added in order: the same
    bits (so the AVX-512 default changes no result an AVX2 machine gives)."""
    rng = np.random.default_rng(m + n + p)
    a, b = rng.standard_normal((m, n)).astype(dtype), rng.standard_normal((n, p)).astype(dtype)
    before = native.gemm_isa()
    try:
        results = []
        for name in ("avx512", "avx2"):
            native.set_gemm_isa(name)
            results.append(flat_matmul(a, b, dtype))
            if m % TILE == 0 and n % TILE == 0 and p % TILE == 0:
                results.append(tiled_matmul(a, b, dtype))
    finally:
        native.set_gemm_isa(before)
    half = len(results) // 2
    for wide, narrow in zip(results[:half], results[half:]):
        np.testing.assert_array_equal(wide, narrow)


@pytest.mark.parametrize("value", ["foo", "AVX512 "])
def test_a_bad_environment_variable_warns_with_its_value_and_keeps_the_default(value):
    result = run_with_gemm_isa(value, (
        "import warnings, needle as ndl; warnings.simplefilter('always'); ndl.cpu(); "
        "from needle.backend_ndarray import ndarray_backend_cpu as m; print(m.gemm_isa())"))
    assert result.stdout.strip() == ISAS[0]
    warning = [line for line in result.stderr.splitlines() if "NEEDLE_GEMM_ISA" in line]
    assert len(warning) == 1 and repr(value) in warning[0] and ISAS[0] in warning[0]
