"""Numerics in the tails, PyTorch as the oracle.

sigmoid, softplus and log_sigmoid keep full relative accuracy, values and first derivatives,
down to the smallest normal float in float32 and float64 (below it, in the subnormal range,
only to within the smallest normal), and their second derivatives are checked numerically
in the tail where everything vanishes. logsumexp and logsoftmax of rows whose max is
infinite give PyTorch's values and gradients, NaN where PyTorch's are NaN. power gives pow's
special values with PyTorch's gradients; power_scalar's whole exponents match NumPy.

PyTorch's own references are taken in float64 on the same (dtype-rounded) inputs. Two are
written through torch rather than taken from its autograd or softplus: sigmoid's derivative as
sigmoid(x) sigmoid(-x) (torch's y (1 - y) rounds to 0 from x = 17 in float32, x = 37 in
float64) and softplus as -logsigmoid(-x) (torch's softplus is linear above x = 20).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import needle as ndl
from needle.gradcheck import gradcheck, gradgradcheck
from tests.strategies import grad_settings, shapes

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-6, "float64": 1e-14}
INF, NAN = float("inf"), float("nan")


def _edges(dtype):
    tiny = float(np.finfo(dtype).tiny)
    return np.array([0.0, -0.0, 1e-30, -1e-30, tiny, -tiny, -17, -20, -40, -87, -88, -100,
                     -700, -745, 17, 20, 40, 87, 88, 100, 700, 745, 1e4, -1e4, INF, -INF, NAN],
                    dtype=dtype)


def _assert_close(ours, reference, dtype, what):
    """Relative error <= RTOL[dtype] down to the smallest normal; NaN and inf where the
    reference has them."""
    np.testing.assert_allclose(ours, reference, rtol=RTOL[dtype],
                               atol=float(np.finfo(dtype).tiny), err_msg=what)


def _torch_sigmoid(t):
    return torch.sigmoid(t), torch.sigmoid(t) * torch.sigmoid(-t)


def _torch_softplus(t):
    t = t.clone().requires_grad_(True)
    y = -F.logsigmoid(-t)
    return y, torch.autograd.grad(y.sum(), t)[0]


def _torch_log_sigmoid(t):
    t = t.clone().requires_grad_(True)
    y = F.logsigmoid(t)
    return y, torch.autograd.grad(y.sum(), t)[0]


LOGISTIC = {"sigmoid": (ndl.sigmoid, _torch_sigmoid),
            "softplus": (ndl.softplus, _torch_softplus),
            "log_sigmoid": (ndl.log_sigmoid, _torch_log_sigmoid)}


def _check_logistic(name, values, device, dtype):
    op, torch_op = LOGISTIC[name]
    x = ndl.Tensor(values, device=device, dtype=dtype, requires_grad=True)
    y = op(x)
    y.sum().backward()
    assert y.dtype == dtype and x.grad.dtype == dtype
    value, derivative = torch_op(torch.tensor(values.astype(np.float64)))
    _assert_close(y.numpy(), value.detach().numpy(), dtype, f"{name} value, {dtype}")
    _assert_close(x.grad.numpy(), derivative.detach().numpy(), dtype,
                  f"{name} derivative, {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOGISTIC)
def test_logistic_family_keeps_relative_accuracy_at_the_edges(name, dtype, device):
    _check_logistic(name, _edges(dtype), device, dtype)


def _logits(dtype):
    """Values across both tails: float32 to +-104 (where e^x leaves the subnormals), float64
    to +-745."""
    limit = 104.0 if dtype == "float32" else 745.0
    wide = st.floats(-limit, limit, width=32 if dtype == "float32" else 64)
    return hnp.arrays(dtype, shapes(), elements=st.one_of(wide, st.floats(-40, 40, width=32)))


@given(data=st.data())
def test_logistic_family_matches_torch_on_drawn_logits(device, data):
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    values = data.draw(_logits(dtype), label="values")
    for name in LOGISTIC:
        _check_logistic(name, values, device, dtype)


# In the tail where a function and its first two derivatives all vanish (sigmoid and softplus
# below 0, log_sigmoid above), central differences resolve them relatively, so the numeric
# checks can run with no absolute tolerance. The centres reach both the band where float64's
# 1 + e^x still differs from 1 and the deep tail down to the smallest normal.
VANISHING_SIDE = {"sigmoid": -1, "softplus": -1, "log_sigmoid": 1}


@pytest.mark.parametrize("name", LOGISTIC)
@grad_settings()
@given(data=st.data())
def test_logistic_family_first_and_second_derivatives_in_the_tail(name, device, data):
    centre = data.draw(st.one_of(st.floats(15.0, 36.0), st.floats(36.0, 700.0)), label="centre")
    noise = data.draw(hnp.arrays(np.float64, shapes(), elements=st.floats(-1.0, 1.0)),
                      label="noise")
    x = ndl.Tensor(VANISHING_SIDE[name] * centre + noise, device=device, dtype="float64")
    op = LOGISTIC[name][0]
    assert gradcheck(op, x, atol=0.0, rtol=1e-4, name=name)
    assert gradgradcheck(op, x, atol=0.0, rtol=1e-4, name=name)


# ---- logsumexp / logsoftmax of rows with infinities --------------------------------------
ROWS = np.array([[-INF, -INF, -INF], [INF, 1.0, 2.0], [INF, INF, 0.0], [-INF, INF, 1.0],
                 [-INF, 1.0, 2.0], [NAN, 1.0, 2.0], [INF, NAN, 1.0], [NAN, -INF, -INF],
                 [-1e4, 0.0, 1e4]])
MATRICES = {"all_-inf": np.full((2, 3), -INF), "+inf_and_-inf": ROWS[[0, 1, 3]],
            "-inf_and_finite": ROWS[[0, 4]], "with_nan": ROWS[[0, 1, 5]],
            "finite": ROWS[[4, 8]]}


def _check_reduction(needle_fn, torch_fn, values, device, dtype):
    """Value and gradient (of the sum, so every output sends 1) equal to torch's, NaN where
    torch's is NaN. NumPy reports NaN made from infinities as an invalid value; here that
    NaN is the expected result."""
    x = ndl.Tensor(values, device=device, dtype=dtype, requires_grad=True)
    with np.errstate(invalid="ignore"):
        y = needle_fn(x)
        y.sum().backward()
    t = torch.tensor(values.astype(dtype), requires_grad=True)
    expected = torch_fn(t)
    (expected_grad,) = torch.autograd.grad(expected.sum(), t)
    assert y.shape == tuple(expected.shape)
    _assert_close(y.numpy(), expected.detach().numpy(), dtype, "value")
    _assert_close(x.grad.numpy(), expected_grad.numpy(), dtype, "gradient")


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_rows_with_infinities_match_torch(dtype, device):
    _check_reduction(lambda x: ndl.logsumexp(x, axes=1), lambda t: torch.logsumexp(t, 1),
                     ROWS, device, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("matrix", MATRICES)
def test_logsumexp_over_all_axes_with_infinities_matches_torch(matrix, dtype, device):
    _check_reduction(lambda x: ndl.logsumexp(x, axes=None),
                     lambda t: torch.logsumexp(t, (0, 1)), MATRICES[matrix], device, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsoftmax_rows_with_infinities_match_torch(dtype, device):
    """PyTorch's log_softmax is NaN for a row whose max is infinite, and so is ours."""
    _check_reduction(ndl.logsoftmax, lambda t: F.log_softmax(t, 1), ROWS, device, dtype)


# ---- power --------------------------------------------------------------------------------
BASES = [0.0, -0.0, -2.0, -1.5, 2.0, INF, -INF]
EXPONENTS = [0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, 2.5]


@pytest.mark.parametrize("dtype", DTYPES)
def test_power_special_values_and_gradients_match_torch(dtype, device):
    """Every (a, b) of the table: values, signs of zeros and infinities, NaN positions and
    both gradients as PyTorch gives them (its gradients at these points are NaN or inf in
    places too: d/db of a negative base is NaN, d/da at 0 to b < 1 is inf)."""
    a, b = (g.ravel().astype(dtype) for g in np.meshgrid(BASES, EXPONENTS, indexing="ij"))
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    expected = torch.pow(ta, tb)
    expected_grads = torch.autograd.grad(expected.sum(), [ta, tb])
    na = ndl.Tensor(a, device=device, dtype=dtype, requires_grad=True)
    nb = ndl.Tensor(b, device=device, dtype=dtype, requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # as NumPy's own power reports
        out = ndl.power(na, nb)
        out.sum().backward()
        numpy_pow = np.power(a, b)
    value, reference = out.numpy(), expected.detach().numpy()
    _assert_close(value, reference, dtype, "power value")
    real = ~np.isnan(reference)
    np.testing.assert_array_equal(np.signbit(value[real]), np.signbit(reference[real]),
                                  err_msg="power: sign of zeros and infinities")
    np.testing.assert_array_equal(value, numpy_pow)
    for name, ours, theirs in (("d/da", na.grad, expected_grads[0]),
                               ("d/db", nb.grad, expected_grads[1])):
        _assert_close(ours.numpy(), theirs.numpy(), dtype, f"power {name}")


# Values whose whole powers from -3 to 5 are exact or one rounding away (x^|k| exact, then
# one reciprocal), with signed zeros, infinities and NaN: there every exponent gives the
# correctly rounded value, bit for bit, signs of zeros and infinities included.
EXACT_BASES = [-3.0, -2.0, -1.5, -1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0,
               INF, -INF, NAN]


def _bits_equal(ours, expected, what):
    np.testing.assert_array_equal(ours, expected, err_msg=what)
    real = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(ours[real]), np.signbit(expected[real]),
                                  err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", range(-3, 6))
def test_power_scalar_whole_exponents_match_numpy(k, dtype, device):
    """The reference is NumPy's pow, in float64 (for float32 inputs rounded once to float32:
    the correctly rounded power). Bit for bit on the exact cases and, everywhere, for
    NumPy's own fast exponents 0, 1, 2 and -1; within 4 ulp elsewhere (products instead of
    pow for |k| <= 4)."""
    random = np.random.default_rng(k + 3).standard_normal(2000) * 3
    for values, bitwise in ((np.array(EXACT_BASES), True), (random, k in (0, 1, 2, -1))):
        x = values.astype(dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            ours = ndl.power_scalar(ndl.Tensor(x, device=device, dtype=dtype), k).numpy()
            expected = np.power(x.astype(np.float64), float(k)).astype(dtype)
        assert ours.dtype == dtype
        if bitwise:
            _bits_equal(ours, expected, f"x ** {k}, {dtype}")
        else:
            np.testing.assert_array_max_ulp(ours, expected, maxulp=4)


PRODUCTS = {3: lambda x: x * x * x, 4: lambda x: (x * x) * (x * x), -2: lambda x: 1 / (x * x),
            -3: lambda x: 1 / (x * x * x), -4: lambda x: 1 / ((x * x) * (x * x))}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", PRODUCTS)
def test_power_scalar_small_whole_exponents_are_products(k, dtype, device):
    """The fast path: exponents -4 to 4 beyond NumPy's own are these products, bit for bit,
    on every device (NumPy's pow is ~100x slower than a multiply)."""
    x = (np.random.default_rng(k + 10).standard_normal(2000) * 3).astype(dtype)
    x[:4] = [0.0, -0.0, INF, -INF]
    with np.errstate(divide="ignore"):
        ours = ndl.power_scalar(ndl.Tensor(x, device=device, dtype=dtype), k).numpy()
        expected = PRODUCTS[k](x)
    _bits_equal(ours, expected, f"x ** {k}, {dtype}")
