"""Autograd semantics the course relies on (COURSE_API.md sections 3 and 13)."""
import gc

import numpy as np
import pytest

import needle as ndl
from needle.autograd import TensorOp, find_topo_sort
from needle.ops import AddScalar, EWiseAdd, EWiseMul, MulScalar, Negate


# ---- graph structure ---------------------------------------------------------------------
def test_topo_sort_is_post_order_dfs_over_inputs_in_order():
    """hw1's 3*a*a + 4*b*a - a: exactly a, 3a, 3a*a, b, 4b, 4b*a, sum, -a, final."""
    a = ndl.Tensor(np.array([[0.88, 0.1]]))
    b = ndl.Tensor(np.array([[0.3, -2.0]]))
    out = 3 * a * a + 4 * b * a - a
    order = find_topo_sort([out])
    assert len(order) == 9
    three_a, three_a_a, four_b, four_b_a, total, minus_a = (order[i] for i in (1, 2, 4, 5, 6, 7))
    assert order[0] is a and order[3] is b and order[8] is out
    expected_ops = [(three_a, MulScalar, [a]), (three_a_a, EWiseMul, [three_a, a]),
                    (four_b, MulScalar, [b]), (four_b_a, EWiseMul, [four_b, a]),
                    (total, EWiseAdd, [three_a_a, four_b_a]), (minus_a, Negate, [a]),
                    (out, EWiseAdd, [total, minus_a])]
    for node, op_type, inputs in expected_ops:
        assert isinstance(node.op, op_type)
        assert len(node.inputs) == len(inputs)
        assert all(x is y for x, y in zip(node.inputs, inputs))
    x, y = a.numpy(), b.numpy()
    np.testing.assert_allclose(out.numpy(), 3 * x * x + 4 * y * x - x)


def test_topo_sort_handles_deep_graphs_without_recursion():
    """An RNN unrolled for thousands of steps must not hit Python's recursion limit."""
    x = ndl.Tensor(np.ones(2))
    y = x
    for _ in range(5000):
        y = y + 1.0
    assert len(find_topo_sort([y])) == 5001


def test_subtraction_is_add_of_negate():
    """a - b must be add(a, negate(b)) and a - c add_scalar(-c): the node counts depend on it."""
    a, b = ndl.Tensor([1.0, 2.0]), ndl.Tensor([5.0, 7.0])
    out = a - b
    assert isinstance(out.op, EWiseAdd) and out.inputs[0] is a
    negated = out.inputs[1]
    assert isinstance(negated.op, Negate) and negated.inputs[0] is b
    scalar = a - 2.5
    assert isinstance(scalar.op, AddScalar) and scalar.op.scalar == -2.5
    np.testing.assert_array_equal(scalar.numpy(), [-1.5, -0.5])


@pytest.mark.parametrize("expression, expected", [
    (lambda t: 3 * t, lambda x: 3 * x),
    (lambda t: 2.3 * t, lambda x: 2.3 * x),
    (lambda t: t + 1.5, lambda x: x + 1.5),
    (lambda t: 1.5 + t, lambda x: 1.5 + x),
    (lambda t: 1 - t, lambda x: 1 - x),
    (lambda t: 2 / t, lambda x: 2 / x),
    (lambda t: t ** 2, lambda x: x ** 2),
    (lambda t: -t, lambda x: -x),
], ids=["3*t", "2.3*t", "t+1.5", "1.5+t", "1-t", "2/t", "t**2", "-t"])
def test_reflected_operators_with_scalars(expression, expected, device):
    """Python scalars on either side; results stay float32 and differentiable."""
    values = np.array([0.5, -1.25, 4.0], dtype=np.float32)
    t = ndl.Tensor(values, device=device)
    out = expression(t)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), expected(values.astype(np.float64)), rtol=1e-6)
    wide = ndl.Tensor(values, device=device, dtype="float64")
    assert ndl.gradcheck(expression, wide)


# ---- backward semantics --------------------------------------------------------------------
def test_backward_gradients_are_differentiable():
    """hw1's test_compute_gradient: y = x*x + x*z; grad of x.grad lands in x.grad and z.grad."""
    x, z = ndl.Tensor([6.0]), ndl.Tensor([0.5])
    y = x * x + x * z
    y.backward()
    grad_x, grad_z = x.grad, z.grad
    np.testing.assert_allclose(grad_x.numpy(), [2 * 6.0 + 0.5])
    np.testing.assert_allclose(grad_z.numpy(), [6.0])
    grad_x.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0])
    np.testing.assert_allclose(z.grad.numpy(), [1.0])
    np.testing.assert_allclose(grad_x.numpy(), [12.5])  # the first grad is left as it was


def test_second_derivatives_of_a_product():
    """y = x*x*z: dy/dx = 2xz, whose derivatives are 2z (wrt x) and 2x (wrt z)."""
    x, z = ndl.Tensor(np.array([3.0, -1.0])), ndl.Tensor(np.array([0.5, 2.0]))
    (x * x * z).sum().backward()
    grad_x = x.grad
    np.testing.assert_allclose(grad_x.numpy(), 2 * x.numpy() * z.numpy())
    grad_x.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * z.numpy())
    np.testing.assert_allclose(z.grad.numpy(), 2 * x.numpy())


def test_backward_overwrites_grad_instead_of_accumulating():
    x = ndl.Tensor(np.array([1.0, -2.0]))
    loss = (x * x).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_backward_accepts_an_out_grad():
    x = ndl.Tensor(np.array([1.0, -2.0, 0.5]))
    weights = np.array([2.0, 0.0, -1.0])
    (x * x).backward(ndl.Tensor(weights))
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() * weights)


def test_backward_without_graph_gives_constant_grads():
    x = ndl.Tensor(np.array([1.0, 2.0]))
    (x * x).sum().backward(create_graph=False)
    assert not x.grad.requires_grad
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


# ---- Tensor data, dtype and identity -------------------------------------------------------
def test_an_explicit_dtype_is_kept_through_ops_and_gradients(device):
    wide = ndl.Tensor(np.array([1.0, 2.0]), device=device, dtype="float64")
    assert wide.dtype == "float64"
    assert ndl.Tensor(np.ones(2, np.float32), device=device).dtype == "float32"
    assert ndl.Tensor(np.ones(2), device=device, dtype="float32").dtype == "float32"
    out = (wide * 2.0 + 1.0) / 3.0
    assert out.dtype == "float64"
    out.sum().backward()
    assert wide.grad.dtype == "float64"


@pytest.mark.nd_only
def test_ndarray_flavour_is_float32_unless_a_dtype_is_given(device):
    """COURSE_API.md sec. 3.6: float64 NumPy arrays included; an NDArray keeps its dtype."""
    assert ndl.Tensor(np.array([1.0, 2.0]), device=device).dtype == "float32"
    assert ndl.Tensor([1.0, 2.0], device=device).dtype == "float32"
    assert ndl.Tensor(3.0, device=device).dtype == "float32"
    assert ndl.Tensor(np.arange(3), device=device).dtype == "float32"
    wide = ndl.backend_ndarray.NDArray(np.ones(2), device=device, dtype="float64")
    assert ndl.Tensor(wide, device=device).dtype == "float64"


@pytest.mark.nd_only
def test_cached_data_is_an_ndarray_of_the_right_device(device):
    t = ndl.Tensor(np.ones((2, 3)), device=device)
    assert isinstance(t.cached_data, ndl.backend_ndarray.NDArray)
    assert t.device == device
    assert (t + 1.0).device == device


def test_data_getter_shares_storage_and_setter_checks_dtype():
    x = ndl.Tensor(np.array([1.0, 2.0]), dtype="float64")
    data = x.data
    assert not data.requires_grad and data.op is None
    assert data.realize_cached_data() is x.realize_cached_data()
    x.data = ndl.Tensor(np.array([5.0, 6.0]), dtype="float64")
    np.testing.assert_array_equal(x.numpy(), [5.0, 6.0])
    assert x.requires_grad and x.op is None
    x.data = x.data * 2.0  # the optimizer idiom: no graph is recorded
    assert x.op is None
    np.testing.assert_array_equal(x.numpy(), [10.0, 12.0])
    with pytest.raises(TypeError, match="float32"):
        x.data = ndl.Tensor(np.array([1.0, 2.0], dtype=np.float32))


def test_detach_stops_the_gradient():
    x = ndl.Tensor(np.array([1.5, -2.0]))
    detached = x.detach()
    assert not detached.requires_grad and detached.op is None
    np.testing.assert_array_equal(detached.numpy(), x.numpy())
    (detached * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x.numpy())  # not 2x


def test_make_const():
    x = ndl.Tensor(np.array([1.0, 2.0]))
    const = ndl.Tensor.make_const(x)
    assert const.op is None and not const.requires_grad
    np.testing.assert_array_equal(const.numpy(), x.numpy())
    assert ndl.Tensor.make_const(x.realize_cached_data(), requires_grad=True).requires_grad
    assert not (const * 2.0).requires_grad


def test_tensors_hash_and_compare_by_identity():
    """Tensors are dict keys during backward; the data tests rely on default `!=`."""
    a, b = ndl.Tensor([1.0]), ndl.Tensor([1.0])
    assert (a == b) is False and (a == a) is True
    assert (a != b) is True
    assert len({a: 1, b: 2}) == 2


def test_tensor_counter_goes_up_and_back_down():
    gc.collect()
    start = ndl.autograd.TENSOR_COUNTER
    tensors = [ndl.Tensor(np.ones(3)) for _ in range(4)]
    assert ndl.autograd.TENSOR_COUNTER == start + 4
    out = tensors[0] + tensors[1]
    assert ndl.autograd.TENSOR_COUNTER == start + 5
    del tensors, out
    gc.collect()
    assert ndl.autograd.TENSOR_COUNTER == start


def test_a_failed_construction_does_not_move_the_counter():
    """A Tensor whose constructor raised was never counted, so it must not be uncounted."""
    gc.collect()
    start = ndl.autograd.TENSOR_COUNTER
    with pytest.raises(TypeError):
        ndl.Tensor(np.ones(3), dtype="not-a-dtype")
    gc.collect()
    assert ndl.autograd.TENSOR_COUNTER == start


def test_a_result_of_constants_is_a_detached_node():
    a = ndl.Tensor([1.0, 2.0], requires_grad=False)
    out = a * 2.0 + a
    assert not out.requires_grad and out.op is None


# ---- functional grad ------------------------------------------------------------------------
def test_grad_returns_gradients_without_touching_dot_grad():
    x, y = ndl.Tensor(np.array([1.0, -2.0])), ndl.Tensor(np.array([3.0, 0.5]))
    (x + y).sum().backward()
    old_x_grad, old_y_grad = x.grad, y.grad
    grad_x, grad_y = ndl.grad((x * x * y).sum(), [x, y])
    np.testing.assert_allclose(grad_x.numpy(), 2 * x.numpy() * y.numpy())
    np.testing.assert_allclose(grad_y.numpy(), x.numpy() ** 2)
    assert x.grad is old_x_grad and y.grad is old_y_grad
    assert not grad_x.requires_grad  # create_graph=False by default


def test_grad_weights_outputs_by_grad_outputs():
    x, y = ndl.Tensor(np.array([1.0, -2.0])), ndl.Tensor(np.array([3.0, 0.5]))
    weights = np.array([2.0, -1.0])
    grad_x = ndl.grad(x * y, x, grad_outputs=ndl.Tensor(weights))
    assert isinstance(grad_x, ndl.Tensor)  # one input in, one gradient out
    np.testing.assert_allclose(grad_x.numpy(), weights * y.numpy())
    with pytest.raises(ValueError, match="grad_output"):
        ndl.grad(x * y, x, grad_outputs=ndl.Tensor(np.ones(3)))


def test_grad_with_create_graph_is_differentiable():
    x, y = ndl.Tensor(np.array([1.0, -2.0])), ndl.Tensor(np.array([3.0, 0.5]))
    grad_x = ndl.grad((x * x * y).sum(), x, create_graph=True)
    assert grad_x.requires_grad
    grad_xx, grad_xy = ndl.grad(grad_x.sum(), [x, y])
    np.testing.assert_allclose(grad_xx.numpy(), 2 * y.numpy())
    np.testing.assert_allclose(grad_xy.numpy(), 2 * x.numpy())


def test_grad_of_an_unused_input():
    x, unused = ndl.Tensor(np.array([1.0])), ndl.Tensor(np.array([2.0]))
    with pytest.raises(ValueError, match="allow_unused"):
        ndl.grad((x * x).sum(), [x, unused])
    grad_x, grad_unused = ndl.grad((x * x).sum(), [x, unused], allow_unused=True)
    np.testing.assert_allclose(grad_x.numpy(), [2.0])
    assert grad_unused is None


def test_grad_of_several_outputs_sums_their_contributions():
    x = ndl.Tensor(np.array([1.0, 2.0]))
    grad_x = ndl.grad([(x * x).sum(), (x * 3.0).sum()], x)
    np.testing.assert_allclose(grad_x.numpy(), 2 * x.numpy() + 3.0)


# ---- modes ----------------------------------------------------------------------------------
def test_no_grad_records_nothing_and_restores_the_mode():
    x = ndl.Tensor(np.array([1.0, 2.0]))
    with ndl.no_grad():
        assert not ndl.is_grad_enabled()
        out = x * 2.0
        with ndl.enable_grad():
            inner = x * 2.0
    assert not out.requires_grad and out.op is None
    assert inner.requires_grad
    assert ndl.is_grad_enabled()
    with pytest.raises(RuntimeError, match="boom"):
        with ndl.no_grad():
            raise RuntimeError("boom")
    assert ndl.is_grad_enabled()


def test_detect_anomaly_names_the_forward_op_and_its_input_shapes(device):
    x = ndl.Tensor(np.array([[-1.0, 2.0, 3.0]]), device=device)
    with ndl.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"Log.*\(1, 3\)"):
            ndl.log(x)
        ndl.log(x * x)  # finite results pass silently
    assert not ndl.autograd._Mode.anomaly


class _NanGradient(TensorOp):
    """Identity whose gradient is NaN: the backward stage of anomaly mode must name it."""

    def compute(self, a):
        return a + 0

    def gradient(self, out_grad, node):
        nan = np.full(node.inputs[0].shape, np.nan)
        return ndl.Tensor.make_const(ndl.Tensor(nan, device=out_grad.device).cached_data)


def test_detect_anomaly_names_the_op_whose_gradient_is_not_finite(device):
    x = ndl.Tensor(np.array([1.0, 4.0]), device=device)
    with ndl.detect_anomaly():
        out = _NanGradient()(x).sum()
        with pytest.raises(FloatingPointError, match=r"_NanGradient.*gradient"):
            out.backward()
        zero = ndl.Tensor(np.array([0.0, 4.0]), device=device)
        root = ndl.sqrt(zero).sum()  # finite forward, infinite derivative at 0
        with pytest.raises(FloatingPointError, match="Sqrt"):
            root.backward()


def test_without_anomaly_mode_nan_flows_through():
    x = ndl.Tensor(np.array([1.0, 4.0]))
    _NanGradient()(x).sum().backward()
    assert np.isnan(x.grad.numpy()).all()
