"""nn.MaxPool2d / nn.max_pool2d: forward and gradient against PyTorch's max_pool2d (no
ties), ties sharing the gradient by hand, a float64 gradient check on hypothesis-drawn
shapes, and the errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import needle as ndl
from needle import nn
from needle.gradcheck import gradcheck


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_max_pool_matches_torch_forward_and_backward(kernel_size, device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(kernel_size)
    x = rng.standard_normal((2, 3, 2 * kernel_size, 3 * kernel_size)).astype(np.float32)
    upstream = rng.standard_normal((2, 3, 2, 3)).astype(np.float32)
    tensor = ndl.Tensor(x, device=device, requires_grad=True)
    out = nn.MaxPool2d(kernel_size)(tensor)
    (out * ndl.Tensor(upstream, device=device)).sum().backward()
    reference = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.max_pool2d(reference, kernel_size)
    (expected * torch.tensor(upstream)).sum().backward()
    np.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
    np.testing.assert_allclose(tensor.grad.numpy(), reference.grad.numpy(), rtol=1e-6)


def test_a_tie_shares_the_gradient_equally():
    rng = np.random.RandomState(5)
    x = rng.randn(2, 3, 6, 8).astype(np.float32)
    x[0, 0, 0, 1] = x[0, 0, 1, 1] = 5.0  # the first block's largest value, twice
    upstream = rng.randn(2, 3, 3, 4).astype(np.float32)
    blocks = x.reshape(2, 3, 3, 2, 4, 2)
    tensor = ndl.Tensor(x, requires_grad=True)
    out = nn.max_pool2d(tensor)
    np.testing.assert_array_equal(out.numpy(), blocks.max(axis=(3, 5)))
    (out * ndl.Tensor(upstream)).sum().backward()
    winners = blocks == blocks.max(axis=(3, 5), keepdims=True)
    share = winners / winners.sum(axis=(3, 5), keepdims=True)
    expected = (share * upstream[:, :, :, None, :, None]).reshape(x.shape)
    np.testing.assert_allclose(tensor.grad.numpy(), expected, rtol=1e-6)
    assert tensor.grad.numpy()[0, 0, 0, 1] == pytest.approx(upstream[0, 0, 0, 0] / 2)


@given(n=st.integers(1, 2), c=st.integers(1, 2), rows=st.integers(1, 3),
       cols=st.integers(1, 3), k=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_max_pool_gradcheck_float64(n, c, rows, cols, k, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, rows * k, cols * k))
    gradcheck(lambda t: nn.max_pool2d(t, k), ndl.Tensor(x, dtype="float64"))


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match="max_pool2d: height and width must be multiples "
                                         "of kernel_size 2"):
        nn.max_pool2d(ndl.Tensor(np.zeros((1, 1, 5, 4), np.float32)))
    with pytest.raises(ValueError, match=r"max_pool2d: expected \(N, C, H, W\) input"):
        nn.MaxPool2d(2)(ndl.Tensor(np.zeros((4, 4), np.float32)))
    assert repr(nn.MaxPool2d(3)) == "MaxPool2d(kernel_size=3)"
