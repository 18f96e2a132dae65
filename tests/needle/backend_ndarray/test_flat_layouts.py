"""cpu()'s elementwise ops keep a permuted operand's layout, as NumPy's ufuncs do.

A view that is its whole buffer in some axis order (an NCHW view of the convolutions' NHWC
buffers) goes to the flat kernels as it is, and the result is laid out the same way, instead
of both operands being compacted first. Checked on the native module and on the NumPy flat
table (the fallback cpu()), values against NumPy.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from needle.backend_ndarray import NDArray
from needle.backend_ndarray.devices import BackendDevice, cpu
from needle.backend_ndarray.ndarray_backend_numpy import make_numpy_backend
from tests.strategies import arrays, permutations, shapes

pytestmark = pytest.mark.nd_only

DEVICES = [cpu(), BackendDevice("cpu", make_numpy_backend("cpu"), fast=False)]
BINARY = [(lambda a, b: a + b, np.add), (lambda a, b: a * b, np.multiply),
          (lambda a, b: a / b, np.divide), (lambda a, b: a.maximum(b), np.maximum),
          (lambda a, b: a >= b, np.greater_equal)]
UNARY = [(lambda a: a + 2.5, lambda x: x + np.float32(2.5)), (lambda a: a.exp(), np.exp),
         (lambda a: a ** 2, np.square), (lambda a: -a, np.negative)]


@st.composite
def permuted_pairs(draw):
    """(shape, an axis order, two float32 arrays of that shape)."""
    shape = draw(shapes())
    order = draw(permutations(len(shape)))
    x, y = (draw(arrays(shape, 0.5, 3.0)).astype(np.float32) for _ in range(2))
    return shape, order, x, y


def permuted_view(device, host, order):
    """An NDArray with host's values, stored in `order` (a compact buffer of host transposed
    to `order`) and seen in host's axis order."""
    stored = NDArray(np.ascontiguousarray(host.transpose(order)), device=device)
    return stored.permute(tuple(np.argsort(order)))


@pytest.mark.parametrize("device", DEVICES, ids=["native", "numpy_table"])
@pytest.mark.parametrize("op", range(len(BINARY)))
@given(case=permuted_pairs())
def test_binary_ops_keep_a_shared_layout(device, op, case):
    shape, order, x, y = case
    ours, reference = BINARY[op]
    a, b = permuted_view(device, x, order), permuted_view(device, y, order)
    out = ours(a, b)
    np.testing.assert_allclose(out.numpy(), reference(x, y).astype(np.float32), rtol=1e-6)
    assert out.strides == a.strides and out.shape == shape


@pytest.mark.parametrize("device", DEVICES, ids=["native", "numpy_table"])
@pytest.mark.parametrize("op", range(len(UNARY)))
@given(case=permuted_pairs())
def test_unary_and_scalar_ops_keep_the_layout(device, op, case):
    _, order, x, _ = case
    ours, reference = UNARY[op]
    a = permuted_view(device, x, order)
    out = ours(a)
    np.testing.assert_allclose(out.numpy(), reference(x), rtol=2e-6)
    assert out.strides == a.strides


@pytest.mark.parametrize("device", DEVICES, ids=["native", "numpy_table"])
def test_other_views_are_compacted_first(device):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a = permuted_view(device, x, (2, 0, 1))
    b = NDArray(x, device=device)  # compact: a different layout from a's
    out = a + b
    np.testing.assert_array_equal(out.numpy(), x + x)
    assert out.strides == (12, 4, 1)
    sliced = NDArray(np.arange(48, dtype=np.float32).reshape(2, 3, 8), device=device)[:, :, ::2]
    np.testing.assert_array_equal((sliced * 2).numpy(),
                                  np.arange(48).reshape(2, 3, 8)[:, :, ::2] * 2)
    assert (sliced * 2).strides == (12, 4, 1)  # a strided slice is not its whole buffer
    # the same strides as a compact operand, but a window of a bigger buffer (offset 6)
    whole = np.arange(12, dtype=np.float32).reshape(4, 3)
    window = NDArray(whole, device=device)[2:4, :]
    ones = NDArray(np.ones((2, 3), np.float32), device=device)
    assert window.strides == ones.strides
    np.testing.assert_array_equal((ones + window).numpy(), 1 + whole[2:4])
    np.testing.assert_array_equal((window * ones).numpy(), whole[2:4])
    row = NDArray(np.arange(4, dtype=np.float32), device=device).reshape((1, 4))
    wide = row.broadcast_to((3, 4))
    np.testing.assert_array_equal((wide + 1).numpy(), np.tile(np.arange(4) + 1, (3, 1)))
    assert (wide + 1).strides == (4, 1)
    stored = (a + 1).permute((2, 0, 1))  # the result's buffer is in a's storage order
    assert stored.is_compact() and stored.compact() is stored
