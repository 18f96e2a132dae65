"""Reductions beyond the spec table (test_op_specs.py): logsumexp/logsoftmax at extremes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import needle as ndl
from tests.strategies import arrays, reduction_axes, shapes


@pytest.mark.parametrize("axes", [None, 0, 1, -1, (0, 1)], ids=str)
def test_logsumexp_is_exact_for_mixed_magnitudes(axes, device):
    """The course's float64 case: 1e10 next to 1e-10 and -10 must not lose digits."""
    x = np.array([[1e10, 1e9, 1e8, -10.0], [1e-10, 1e9, 1e8, -10.0]])
    out = ndl.logsumexp(ndl.Tensor(x, device=device, dtype="float64"), axes)
    np.testing.assert_allclose(out.numpy(), np.logaddexp.reduce(x, axis=axes), rtol=1e-15)


@given(data=st.data())
def test_logsumexp_gradient_is_the_softmax_over_the_reduced_axes(device, data):
    x = data.draw(arrays(data.draw(shapes()), -20.0, 20.0), label="x")
    axes = data.draw(reduction_axes(x.ndim), label="axes")
    tensor = ndl.Tensor(x, device=device, dtype="float64")
    ndl.logsumexp(tensor, axes).sum().backward()
    kept = np.logaddexp.reduce(x, axis=axes, keepdims=True)
    np.testing.assert_allclose(tensor.grad.numpy(), np.exp(x - kept), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsoftmax_survives_huge_logits(dtype, device):
    """hw2 multiplies logits by 1e5: the max shift must keep everything finite."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((4, 6)) * 1e5).astype(dtype)
    weights = rng.standard_normal((4, 6))
    x = ndl.Tensor(logits, device=device, dtype=dtype)
    out = ndl.logsoftmax(x)
    (out * ndl.Tensor(weights, device=device, dtype=dtype)).sum().backward()
    wide = logits.astype(np.float64)
    reference = wide - np.logaddexp.reduce(wide, axis=1, keepdims=True)
    softmax = np.exp(reference)
    tolerance = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out.numpy(), reference, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(x.grad.numpy(),
                               weights - softmax * weights.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-5)


def test_summation_of_everything_has_one_element(device):
    """The course compares sum over (1,1,1) with a NumPy scalar: any size-1 shape passes."""
    x = np.array([[[2.5]]])
    out = ndl.summation(ndl.Tensor(x, device=device))
    assert int(np.prod(out.shape)) == 1
    assert out.numpy().item() == 2.5


def test_reductions_reject_out_of_range_axes(device):
    x = ndl.Tensor(np.ones((2, 3)), device=device)
    for reduce in (ndl.summation, ndl.logsumexp, ndl.mean):
        with pytest.raises(ValueError, match="out of range"):
            reduce(x, 2)
    with pytest.raises(ValueError, match="normalize: axis 2 is out of range"):
        ndl.normalize(x, 2)


def test_normalize_needs_an_axis(device):
    with pytest.raises(ValueError, match="normalize: needs at least one axis"):
        ndl.normalize(ndl.Tensor(np.ones((2, 3)), device=device), ())


@pytest.mark.parametrize("create_graph", [False, True])
def test_normalize_gradient_paths_agree(create_graph, device):
    """The array path (no graph recorded) and the op-built path give the same gradient."""
    rng = np.random.default_rng(5)
    x = ndl.Tensor(rng.standard_normal((6, 3, 4)), device=device, dtype="float64")
    g = ndl.Tensor(rng.standard_normal((6, 3, 4)), device=device, dtype="float64",
                   requires_grad=False)
    (dx,) = ndl.grad([ndl.normalize(x, (0, 2))], [x], [g], create_graph=create_graph)
    x_hat = (x.numpy() - x.numpy().mean((0, 2), keepdims=True)) / np.sqrt(
        x.numpy().var((0, 2), keepdims=True) + 1e-5)
    mean = lambda a: a.mean((0, 2), keepdims=True)  # noqa: E731
    expected = (g.numpy() - mean(g.numpy()) - x_hat * mean(g.numpy() * x_hat)) / np.sqrt(
        x.numpy().var((0, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(dx.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert dx.requires_grad == create_graph


def test_normalize_op_object_can_be_reused(device):
    """Each application keeps its own statistics, so reusing one op object is safe."""
    rng = np.random.default_rng(6)
    op = ndl.ops.Normalize((0,))
    x1 = ndl.Tensor(rng.standard_normal((5, 3)), device=device)
    x2 = ndl.Tensor(rng.standard_normal((5, 3)) * 10 + 3, device=device)
    y1, y2 = op(x1), op(x2)
    g = ndl.Tensor(rng.standard_normal((5, 3)), device=device, requires_grad=False)
    for x, y in ((x1, y1), (x2, y2)):
        (fast,) = ndl.grad([y], [x], [g])
        (built,) = ndl.grad([y], [x], [g], create_graph=True)
        np.testing.assert_allclose(fast.numpy(), built.numpy(), atol=1e-10)
    assert y1.op is not y2.op and op is not y1.op
    with ndl.no_grad():
        _, mean, var = op.with_statistics(x2)
    np.testing.assert_allclose(ndl.Tensor.make_const(mean).numpy().ravel(), x2.numpy().mean(0))
    np.testing.assert_allclose(ndl.Tensor.make_const(var).numpy().ravel(), x2.numpy().var(0))


def test_normalize_keeps_float32_with_numpy_float64_eps(device):
    x = ndl.Tensor(np.ones((4, 3), dtype=np.float32), device=device)
    assert ndl.normalize(x, (0,), eps=np.float64(1e-5)).dtype == "float32"


@pytest.mark.parametrize("create_graph", [False, True])
def test_batch_normalize_is_normalize_then_affine(create_graph, device):
    """The one op gives what Normalize followed by the affine ops gives: the output and the
    three gradients, on both gradient paths (arrays, or built from ops)."""
    rng = np.random.default_rng(9)
    x, g = (ndl.Tensor(rng.standard_normal((5, 3, 2, 4)) * 3 + 1, device=device,
                       dtype="float64", requires_grad=r) for r in (True, False))
    weight, bias = (ndl.Tensor(rng.standard_normal(3), device=device, dtype="float64",
                               requires_grad=True) for _ in range(2))

    def chain(x, weight, bias):
        def along(v):
            return ndl.broadcast_to(ndl.reshape(v, (1, 3, 1, 1)), x.shape)
        return ndl.normalize(x, (0, 2, 3)) * along(weight) + along(bias)

    results = []
    for f in (ndl.batch_normalize, chain):
        y = f(x, weight, bias)
        grads = ndl.grad([y], [x, weight, bias], [g], create_graph=create_graph)
        assert grads[0].requires_grad == grads[1].requires_grad == create_graph
        results.append([y.numpy()] + [grad.numpy() for grad in grads])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_batch_normalize_names_bad_shapes(device):
    x = ndl.Tensor(np.ones((4, 3)), device=device)
    with pytest.raises(ValueError, match=r"batch_normalize: expected x with at least 2 dims "
                                         r"and weight and bias of shape \(3,\)"):
        ndl.batch_normalize(x, ndl.Tensor(np.ones(4), device=device),
                            ndl.Tensor(np.ones(4), device=device))
    with pytest.raises(ValueError, match="batch_normalize: axis 2 is out of range"):
        ndl.batch_normalize(x, ndl.Tensor(np.ones(3), device=device),
                            ndl.Tensor(np.ones(3), device=device), axis=2)
