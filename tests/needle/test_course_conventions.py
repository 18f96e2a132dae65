"""The course's homework conventions, tested the way the course's own tests are written.

Module-level device list with `ndl.cuda()` (collected on machines without CuPy, so pytest's
`getattr(device, "__name__", None)` must get None, not an error), Tensors built from lists and
Python floats, the course's finite-difference checks that mutate `realize_cached_data().flat`
in place. The NumPy-flavour tests run under NEEDLE_BACKEND=np (tests/test_numpy_flavour.py
runs this folder that way); the NDArray-flavour tests in the default flavour.
COURSE_API.md sec. 3.6 and checklist items 14 and 16.
"""
import numpy as np
import pytest

import needle as ndl

NUMPY_FLAVOUR = ndl.backend_selection.BACKEND == "np"
numpy_flavour = pytest.mark.skipif(not NUMPY_FLAVOUR, reason="NumPy flavour (NEEDLE_BACKEND=np)")
ndarray_flavour = pytest.mark.skipif(NUMPY_FLAVOUR, reason="NDArray flavour (NEEDLE_BACKEND=nd)")

if NUMPY_FLAVOUR:
    _DEVICES = [ndl.cpu()]
else:
    _DEVICES = [ndl.cpu(), pytest.param(ndl.cuda(), marks=pytest.mark.skipif(
        not ndl.cuda().enabled(), reason="No GPU"))]


def gradient_check(f, *args, tol=1e-6, backward=False, **kwargs):
    """hw1's check: central differences of sum(f) by perturbing each element in place."""
    eps = 1e-4
    numerical_grads = [np.zeros(a.shape) for a in args]
    for i in range(len(args)):
        for j in range(args[i].realize_cached_data().size):
            args[i].realize_cached_data().flat[j] += eps
            f1 = float(f(*args, **kwargs).numpy().sum())
            args[i].realize_cached_data().flat[j] -= 2 * eps
            f2 = float(f(*args, **kwargs).numpy().sum())
            args[i].realize_cached_data().flat[j] += eps
            numerical_grads[i].flat[j] = (f1 - f2) / (2 * eps)
    if not backward:
        out = f(*args, **kwargs)
        computed_grads = [x.numpy() for x in out.op.gradient_as_tuple(
            ndl.Tensor(np.ones(out.shape)), out)]
    else:
        out = f(*args, **kwargs).sum()
        out.backward()
        computed_grads = [a.grad.numpy() for a in args]
    error = sum(np.linalg.norm(computed_grads[i] - numerical_grads[i])
                for i in range(len(args)))
    assert error < tol
    return computed_grads


def backward_check(f, *args, **kwargs):
    """hw4's check: out_grad from np.random.randn (float64), gradients vs differences."""
    eps = 1e-5
    out = f(*args, **kwargs)
    c = np.random.randn(*out.shape)
    numerical_grad = [np.zeros(a.shape) for a in args]
    for i in range(len(args)):
        for j in range(args[i].realize_cached_data().size):
            args[i].realize_cached_data().flat[j] += eps
            f1 = (f(*args, **kwargs).numpy() * c).sum()
            args[i].realize_cached_data().flat[j] -= 2 * eps
            f2 = (f(*args, **kwargs).numpy() * c).sum()
            args[i].realize_cached_data().flat[j] += eps
            numerical_grad[i].flat[j] = (f1 - f2) / (2 * eps)
    backward_grad = out.op.gradient_as_tuple(ndl.Tensor(c, device=args[0].device), out)
    error = sum(np.linalg.norm(backward_grad[i].numpy() - numerical_grad[i])
                for i in range(len(args)))
    assert error < 4.2e-1
    return [g.numpy() for g in backward_grad]


# ---- NumPy flavour (hw1/hw2): NumPy's inference and broadcasting -----------------------
@numpy_flavour
@pytest.mark.parametrize("value, dtype", [
    (1.5, "float64"), ([1.0, 2.0], "float64"), ([[0, 0, 2]], "int64"), ([6], "int64"),
    (3, "int64"), (np.float32(2.0), "float32"), (np.ones(3, dtype=np.float32), "float32"),
    (np.ones(3), "float64"), (np.arange(4, dtype=np.uint8), "uint8")])
def test_numpy_flavour_infers_dtypes_as_numpy_array_does(value, dtype):
    x = ndl.Tensor(value)
    assert str(x.dtype) == dtype == str(np.array(value).dtype)
    assert isinstance(x.realize_cached_data(), np.ndarray)


@numpy_flavour
def test_numpy_flavour_random_scalar_is_float64_and_passes_hw1_gradient_check():
    np.random.seed(0)
    x = ndl.Tensor(np.random.randn())
    assert x.dtype == "float64"
    gradient_check(ndl.broadcast_to, x, shape=(3, 3, 3))


@numpy_flavour
def test_numpy_flavour_power_broadcasts_implicitly_as_hw1_expects():
    a, b = ndl.Tensor([[1.0, 2.0, 3.0]]), ndl.Tensor(np.ones((3,)) * 2)
    out = ndl.power(a, b)
    np.testing.assert_allclose(out.numpy(), [[1.0, 4.0, 9.0]], rtol=1e-7)
    grads = gradient_check(ndl.power, a, b)
    assert grads[0].shape == (1, 3) and grads[1].shape == (3,)
    np.testing.assert_allclose(grads[1], np.log([1.0, 2.0, 3.0]) * [1.0, 4.0, 9.0], rtol=1e-7)


@numpy_flavour
@pytest.mark.parametrize("op, shapes", [
    (ndl.add, [(2, 3), (3,)]), (ndl.multiply, [(4, 1), (1, 5)]),
    (ndl.divide, [(2, 1, 3), (4, 3)])])
def test_numpy_flavour_broadcast_gradients_sum_back_to_each_input(op, shapes):
    np.random.seed(1)
    xs = [ndl.Tensor(np.random.rand(*s) + 0.5) for s in shapes]
    gradient_check(op, *xs, backward=True)
    for x in xs:
        assert x.grad.shape == x.shape


@numpy_flavour
def test_numpy_flavour_batched_matmul_is_float64_exact():
    np.random.seed(2)
    a, b = np.random.randn(6, 6, 5, 4), np.random.randn(4, 3)
    out = ndl.matmul(ndl.Tensor(a), ndl.Tensor(b))
    assert out.dtype == "float64"
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-7)


@numpy_flavour
def test_numpy_flavour_lists_of_python_floats_give_float64_results():
    x = ndl.Tensor([[0.1, 0.2], [0.3, 0.4]])
    y = ndl.summation(ndl.exp(x) * 3.0 + x / 7.0, axes=(1,))
    expected = (np.exp([[0.1, 0.2], [0.3, 0.4]]) * 3.0 + np.array([[0.1, 0.2], [0.3, 0.4]])
                / 7.0).sum(axis=1)
    assert y.dtype == "float64"
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-7)


# ---- NDArray flavour (hw3/hw4): float32 unless asked, no implicit broadcasting -------------
@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
@pytest.mark.parametrize("value", [1.5, [1.0, 2.0], [[0, 0, 2]], np.random.randn(3, 2),
                                   np.ones(3, dtype=np.float64), np.arange(3)])
def test_ndarray_flavour_is_float32_whenever_no_dtype_is_given(device, value):
    assert ndl.Tensor(value, device=device).dtype == "float32"
    assert ndl.backend_ndarray.array(value, device=device).dtype == "float32"
    assert ndl.backend_ndarray.NDArray(value, device=device).dtype == "float32"


@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
def test_ndarray_flavour_float64_only_on_request(device):
    x = ndl.Tensor(np.random.randn(2, 2), device=device, dtype="float64")
    assert x.dtype == "float64"
    assert ndl.Tensor(x.realize_cached_data()).dtype == "float64"  # an NDArray keeps its own
    assert ndl.Tensor(x).dtype == "float64"


@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
def test_ndarray_flavour_tanh_backward_with_a_float64_out_grad(device):
    np.random.seed(0)
    A = np.random.randn(5, 5).astype(np.float32)
    grads = backward_check(ndl.tanh, ndl.Tensor(ndl.backend_ndarray.array(A), device=device))
    assert grads[0].dtype == np.float32


@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
def test_ndarray_flavour_summation_backward_with_a_float64_sourced_out_grad(device):
    np.random.seed(1)
    A = np.random.randn(5, 4, 3)
    backward_check(ndl.summation, ndl.Tensor(A, device=device), axes=(1,))


@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
def test_ndarray_flavour_never_broadcasts_implicitly(device):
    a, b = ndl.Tensor([[1.0, 2.0, 3.0]], device=device), ndl.Tensor([2.0, 2.0, 2.0],
                                                                    device=device)
    with pytest.raises(ValueError, match=r"power: shape mismatch \(1, 3\) vs \(3,\)"):
        ndl.power(a, b)


@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
def test_float32_with_an_integer_tensor_stays_float32(device):
    x = ndl.Tensor([1.5, 2.5, -1.0], device=device)
    n = ndl.Tensor(np.array([1, 2, 3]), device=device, dtype="int64")
    for y in (x + n, n + x, x * n, n * x, x / n, ndl.maximum(x, n)):
        assert y.dtype == "float32"
    np.testing.assert_array_equal((x * n).numpy(), np.float32([1.5, 5.0, -3.0]))


@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
def test_float32_with_float64_is_an_error_naming_both(device):
    x = ndl.Tensor([1.0], device=device)
    y = ndl.Tensor([1.0], device=device, dtype="float64")
    with pytest.raises(TypeError, match="float32 and float64"):
        x + y


# ---- devices answer unknown attributes as Python expects ----------------------------------
@pytest.mark.parametrize("device", [*ndl.backend_selection.all_devices()], ids=str)
def test_every_device_answers_unknown_attributes_with_attribute_error(device):
    assert getattr(device, "__name__", None) is None
    assert not hasattr(device, "no_such_attribute")
    with pytest.raises(AttributeError):
        device.no_such_attribute  # noqa: B018


@ndarray_flavour
@pytest.mark.skipif(NUMPY_FLAVOUR or ndl.cuda().enabled(),
                    reason="cuda() is enabled here (a GPU is visible)")
def test_cuda_without_cupy_raises_the_install_hint_only_on_real_use():
    with pytest.raises(RuntimeError, match="install CuPy"):
        ndl.cuda().empty((2,))
    with pytest.raises(RuntimeError, match="install CuPy"):
        ndl.Tensor([1.0], device=ndl.cuda())


@ndarray_flavour
@pytest.mark.parametrize("device", _DEVICES, ids=str)
def test_random_initializers_honour_an_explicit_float64(device):
    np.random.seed(3)
    expected = np.random.randn(4, 3)
    np.random.seed(3)
    x = ndl.init.randn(4, 3, device=device, dtype="float64")
    assert x.dtype == "float64"
    np.testing.assert_array_equal(x.numpy(), expected)
    assert ndl.init.one_hot(3, ndl.Tensor([2.0]), device=device, dtype="float64").dtype \
        == "float64"
