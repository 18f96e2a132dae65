"""cpu()'s compact() of permuted views against NumPy: the transposing copies (2-D transposes,
NHWC <-> NCHW, the 8x8 blocks in AVX2 registers for 4-byte dtypes, scalar blocks otherwise),
with sizes off the 8-element blocks, offsets (slices), flips, casts and both thread counts."""
import itertools

import numpy as np
import pytest

from needle import backend_ndarray as nd

native = pytest.importorskip("needle.backend_ndarray.ndarray_backend_cpu",
                             reason="native cpu backend not built")

DTYPES = ["float32", "int32", "float64", "uint8"]


def values(rng, shape, dtype):
    return (rng.integers(0, 200, size=shape) if dtype in ("int32", "uint8")
            else rng.standard_normal(shape)).astype(dtype)


def check(x, nd_view, np_view, dtype):
    """compact() of nd_view(NDArray) equals np_view(ndarray), bit for bit, and is compact."""
    a = nd.array(x, device=nd.cpu(), dtype=dtype)
    view = nd_view(a)
    assert not view.is_compact()
    got = view.compact()
    assert got.is_compact() and got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), np_view(x))


def reversed_columns(a):
    """a[:, ::-1] as a negative-stride view (NDArray.flip compacts it)."""
    return nd.NDArray.make(a.shape, strides=(a.strides[0], -a.strides[1]), device=a.device,
                           handle=a._handle, offset=a.shape[1] - 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 8), (16, 24), (13, 29), (1024, 40), (7, 300), (3, 5)],
                         ids=str)
def test_compact_of_2d_transposes(shape, dtype, threads):
    x = values(np.random.default_rng(sum(shape)), shape, dtype)
    check(x, lambda a: a.permute((1, 0)), lambda a: a.T, dtype)
    # an offset, both sides off the blocks
    check(x, lambda a: a.permute((1, 0))[2:, 1:], lambda a: a.T[2:, 1:], dtype)
    # a -1 stride: the scalar blocks
    check(x, lambda a: reversed_columns(a).permute((1, 0)), lambda a: a[:, ::-1].T, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 14, 14, 64), (3, 7, 7, 128), (2, 5, 9, 13),
                                   (64, 28, 28, 1), (2, 8, 8, 8)], ids=str)
def test_compact_of_4d_permutations(shape, dtype, threads):
    x = values(np.random.default_rng(sum(shape) + 1), shape, dtype)
    for axes in itertools.permutations(range(4)):
        if axes != (0, 1, 2, 3) and not (1 in shape and axes == (0, 1, 3, 2)):
            check(x, lambda a, axes=axes: a.permute(axes), lambda a, axes=axes: a.transpose(axes),
                  dtype)


def test_compact_casting_transpose():
    """A transposing copy into another dtype (the engine's cast path) keeps the values."""
    x = np.random.default_rng(3).standard_normal((40, 24)).astype(np.float32)
    a = nd.array(x, device=nd.cpu()).permute((1, 0))
    out = nd.NDArray.make(a.shape, device=nd.cpu(), dtype="float64")
    native.compact(a._handle, out._handle, a.shape, a.strides, 0)
    np.testing.assert_array_equal(out.numpy(), x.T.astype(np.float64))
