"""Shape ops beyond the spec table (test_op_specs.py): the course's conventions spelled out."""
import numpy as np
import pytest

import needle as ndl
from tests.strategies import Layout


@pytest.mark.parametrize("layout", [Layout("permuted", (2, 0, 1)), Layout("strided"),
                                    Layout("broadcast")], ids=repr)
def test_noncontiguous_layouts_really_are_views(layout, device):
    """The non-contiguous forward tests prove nothing if their inputs come out packed."""
    values = np.arange(24.0).reshape(2, 3, 4)
    tensor, held = layout.build(values, device, "float32")
    data = tensor.realize_cached_data()
    if isinstance(data, np.ndarray):  # the NumPy flavour
        assert not data.flags.c_contiguous
    else:
        assert not data.is_compact()
    np.testing.assert_array_equal(tensor.numpy(), held)
    if layout.kind != "broadcast":
        np.testing.assert_array_equal(held, values)


@pytest.mark.parametrize("source", [(), (1,), (3, 1), (1, 3, 1)], ids=str)
def test_broadcast_to_new_leading_axes_and_scalars(source, device):
    """hw1 broadcasts () and (1,) to (3, 3, 3); the gradient sums the copies back."""
    x = np.random.default_rng(0).standard_normal(source)
    tensor = ndl.Tensor(x, device=device, dtype="float64")
    out = ndl.broadcast_to(tensor, (3, 3, 3))
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(x, (3, 3, 3)))
    out.sum().backward()
    assert tensor.grad.shape == source
    np.testing.assert_allclose(tensor.grad.numpy(), np.full(source, 27 / max(x.size, 1)))


def test_transpose_swaps_two_axes_not_a_permutation(device):
    """Course convention: transpose() swaps the last two axes, (i, j) swaps i and j."""
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    tensor = ndl.Tensor(x, device=device)
    assert tensor.transpose().shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(tensor.transpose().numpy(), np.swapaxes(x, 2, 3))
    np.testing.assert_array_equal(tensor.transpose((0, 2)).numpy(), np.swapaxes(x, 0, 2))
    np.testing.assert_array_equal(ndl.transpose(tensor, (1, 3)).numpy(),
                                  np.swapaxes(x, 1, 3))


def test_reshape_infers_minus_one(device):
    x = np.arange(24.0).reshape(2, 3, 4)
    out = ndl.reshape(ndl.Tensor(x, device=device), (4, -1))
    assert out.shape == (4, 6)
    np.testing.assert_array_equal(out.numpy(), x.reshape(4, 6))


def test_dilate_puts_zeros_after_every_element_including_the_last(device):
    """Course semantics: length n -> n * (dilation + 1), undilate keeps every (d+1)-th."""
    x = ndl.Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), device=device)
    expected = np.array([[1.0, 0.0, 0.0, 2.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                         [3.0, 0.0, 0.0, 4.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    dilated = ndl.dilate(x, axes=(0, 1), dilation=1)
    np.testing.assert_array_equal(dilated.numpy(), expected[:, [0, 1, 3, 4]])
    wide = ndl.dilate(x, dilation=2, axes=(1,))
    np.testing.assert_array_equal(wide.numpy(), expected[[0, 2]])
    np.testing.assert_array_equal(ndl.undilate(wide, dilation=2, axes=(1,)).numpy(), x.numpy())
    assert ndl.dilate(x, axes=(0,), dilation=0).shape == (2, 2)


def test_dilate_ignores_axes_beyond_the_rank(device):
    """The course's submit-only case passes an axis >= ndim; it is ignored."""
    x = np.arange(4.0).reshape(2, 2)
    out = ndl.dilate(ndl.Tensor(x, device=device), axes=(1, 4), dilation=1)
    np.testing.assert_array_equal(out.numpy(), np.stack([x, np.zeros_like(x)], 2)
                                  .reshape(2, 4))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack_gradient_is_one_tensor_tuple(axis, device):
    """hw4's check: gradient_as_tuple of stack gives a TensorTuple; `.tuple()` unpacks it."""
    rng = np.random.default_rng(axis + 5)
    pieces = [rng.standard_normal((3, 4)) for _ in range(3)]
    tensors = [ndl.Tensor(p, device=device, dtype="float64") for p in pieces]
    out = ndl.stack(tensors, axis)
    weights = rng.standard_normal(out.shape)
    out_grad = ndl.Tensor(weights, device=device, dtype="float64")
    grads = out.op.gradient_as_tuple(out_grad, out)
    assert len(grads) == 1 and isinstance(grads[0], ndl.TensorTuple)
    unpacked = grads[0].tuple()
    assert len(unpacked) == 3
    for i, grad in enumerate(unpacked):
        np.testing.assert_array_equal(grad.numpy(), np.take(weights, i, axis))
    (out * out_grad).sum().backward()
    for i, tensor in enumerate(tensors):
        np.testing.assert_array_equal(tensor.grad.numpy(), np.take(weights, i, axis))


def test_stack_rejects_pieces_of_different_shapes(device):
    a = ndl.Tensor(np.ones((2, 3)), device=device)
    b = ndl.Tensor(np.ones((3, 2)), device=device)
    with pytest.raises(ValueError, match="stack"):
        ndl.stack([a, b], 0)
