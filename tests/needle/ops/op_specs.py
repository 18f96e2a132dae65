"""One declaration per op gives three checks (STYLE example 11, chainer's FunctionTestCase).

An OpSpec draws Cases (float64 input arrays already shifted into the op's domain, plus the op's
non-Tensor arguments), calls the needle op, and carries an independent NumPy reference written
here, never by calling needle. The family test files (test_elementwise.py, test_reduction.py,
test_shape.py, test_matmul.py) run the generic checks at the bottom over their specs:
forward vs NumPy (contiguous and non-contiguous inputs, on every device), a float64 gradcheck,
and a gradgradcheck where `gradgrad` is set.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import strategies as st

import needle as ndl
from needle.gradcheck import gradcheck, gradgradcheck
from tests.strategies import (arrays, away_from, broadcast_source_shapes, matmul_shapes,
                              permutations, reduction_axes, reshape_targets, shapes)

__all__ = ["Case", "OpSpec", "SPECS", "family", "check_forward", "check_gradients"]


@dataclass
class Case:
    """Inputs of one example: float64 arrays (become Tensors) and keyword arguments."""

    arrays: tuple
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpSpec:
    name: str
    family: str
    cases: st.SearchStrategy
    op: Callable  # (*tensors, **params) -> Tensor, or a sequence of Tensors
    reference: Callable  # (*float64 arrays, **params) -> array, or a list of arrays
    gradgrad: bool = True
    atol32: float = 1e-5  # float32 forward tolerance (rtol is the same)

    def __str__(self):
        return self.name


# ---- case strategies ---------------------------------------------------------------------
def _one(values=arrays, **kwargs):
    """Cases of one array with a drawn shape, values from `values(shape, **kwargs)`."""
    return shapes().flatmap(lambda shape: values(shape, **kwargs)).map(lambda x: Case((x,)))


@st.composite
def _two(draw, first=arrays, second=arrays):
    shape = draw(shapes())
    return Case((draw(first(shape)), draw(second(shape))))


@st.composite
def _with_scalar(draw, scalars, values=arrays, name="scalar"):
    return Case((draw(values(draw(shapes()))),), {name: draw(scalars)})


@st.composite
def _pair_apart(draw):
    """(a, b) with |a - b| >= 0.1 everywhere: maximum/minimum away from ties."""
    shape = draw(shapes())
    a = draw(arrays(shape))
    return Case((a, a + draw(away_from(shape))))


@st.composite
def _power_scalar(draw):
    """Negative, fractional and zero exponents; negative bases only for integer ones. -4 to
    4 beyond NumPy's own fast exponents are products (PowerScalar's fast path)."""
    exponent = draw(st.sampled_from([-4, -3, -2, -1.5, -1, 0, 0.5, 1, 2, 3, 4, 5]))
    shape = draw(shapes())
    low = -2.0 if float(exponent).is_integer() and exponent >= 0 else 0.5
    return Case((draw(arrays(shape, low, 2.0)),), {"scalar": exponent})


@st.composite
def _clip(draw):
    """Bounds at least 0.5 apart; values kept 0.1 away from both bounds."""
    low = draw(st.floats(-2.0, 0.5))
    high = low + draw(st.floats(0.5, 2.0))
    x = draw(arrays(draw(shapes())))
    for bound in (low, high):
        x = np.where(np.abs(x - bound) < 0.1, np.where(x >= bound, bound + 0.2, bound - 0.2), x)
    return Case((x,), {"low": low, "high": high})


def _nonzero_scalars():
    return st.one_of(st.floats(-3.0, -0.5), st.floats(0.5, 3.0))


@st.composite
def _reduction(draw, values=arrays, min_dims=1, max_dims=4):
    x = draw(values(draw(shapes(min_dims=min_dims, max_dims=max_dims))))
    return Case((x,), {"axes": draw(reduction_axes(x.ndim))})


@st.composite
def _normalization(draw):
    """One array and a non-empty set of axes to normalise over (None: all of them)."""
    case = draw(_reduction())
    axes = case.params["axes"]
    if axes == ():
        case.params["axes"] = None
    return case


def _normalize(x, axes):
    mean = np.mean(x, axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(np.var(x, axis=axes, keepdims=True) + 1e-5)


@st.composite
def _batch_normalization(draw):
    """x of 2-4 dims with at least two values per channel, (C,) weight and bias, an axis."""
    x = draw(arrays(draw(shapes(min_dims=2, min_side=2))))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    weight, bias = (draw(arrays((x.shape[axis],))) for _ in range(2))
    return Case((x, weight, bias), {"axis": axis})


def _batch_normalize(x, weight, bias, axis):
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    along = [-1 if i not in axes else 1 for i in range(x.ndim)]
    return _normalize(x, axes) * weight.reshape(along) + bias.reshape(along)


@st.composite
def _broadcast(draw):
    target = draw(shapes())
    return Case((draw(arrays(draw(broadcast_source_shapes(target)))),), {"shape": target})


@st.composite
def _reshape(draw):
    x = draw(arrays(draw(shapes())))
    return Case((x,), {"shape": draw(reshape_targets(x.shape))})


@st.composite
def _transpose(draw):
    x = draw(arrays(draw(shapes(min_dims=2))))
    axis = st.integers(-x.ndim, x.ndim - 1)
    return Case((x,), {"axes": draw(st.one_of(st.none(), st.tuples(axis, axis)))})


@st.composite
def _permute(draw):
    x = draw(arrays(draw(shapes())))
    return Case((x,), {"axes": draw(permutations(x.ndim))})


@st.composite
def _stack(draw):
    shape = draw(shapes(max_dims=3))
    pieces = tuple(draw(arrays(shape)) for _ in range(draw(st.integers(1, 3))))
    return Case(pieces, {"axis": draw(st.integers(-len(shape) - 1, len(shape)))})


@st.composite
def _split(draw):
    x = draw(arrays(draw(shapes(max_dims=3))))
    return Case((x,), {"axis": draw(st.integers(-x.ndim, x.ndim - 1))})


@st.composite
def _concatenate(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        piece_shape = list(shape)
        piece_shape[axis] = draw(st.integers(1, 3))
        pieces.append(draw(arrays(tuple(piece_shape))))
    return Case(tuple(pieces), {"axis": axis})


@st.composite
def _sections(draw):
    x = draw(arrays(draw(shapes(min_dims=1, max_dims=3))))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    cuts = sorted(draw(st.lists(st.integers(0, x.shape[axis]), max_size=3)))
    bounds = [0] + cuts + [x.shape[axis]]
    return Case((x,), {"sizes": [b - a for a, b in zip(bounds, bounds[1:])], "axis": axis})


@st.composite
def _axes_subset(draw, ndim, min_size=0):
    """Distinct axes, each maybe written as a negative index."""
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, min_size=min_size,
                           max_size=ndim))
    return tuple(axis - ndim if draw(st.booleans()) else axis for axis in chosen)


@st.composite
def _flip(draw):
    x = draw(arrays(draw(shapes())))
    return Case((x,), {"axes": draw(_axes_subset(x.ndim, min_size=1))})


@st.composite
def _dilation(draw):
    x = draw(arrays(draw(shapes(max_dims=3, max_side=4))))
    return Case((x,), {"axes": draw(_axes_subset(x.ndim)),
                       "dilation": draw(st.integers(0, 2))})


@st.composite
def _matmul(draw):
    a_shape, b_shape = draw(matmul_shapes())
    return Case((draw(arrays(a_shape, -2.0, 2.0)), draw(arrays(b_shape, -2.0, 2.0))))


# ---- NumPy references (written independently of needle) -----------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _logsumexp(x, axes):
    return np.logaddexp.reduce(x, axis=axes)


def _dilate(x, axes, dilation):
    axes = {axis % x.ndim for axis in axes}
    step = dilation + 1
    out = np.zeros([d * step if i in axes else d for i, d in enumerate(x.shape)])
    out[tuple(slice(None, None, step) if i in axes else slice(None)
              for i in range(x.ndim))] = x
    return out


def _undilate(x, axes, dilation):
    axes = {axis % x.ndim for axis in axes}
    return x[tuple(slice(None, None, dilation + 1) if i in axes else slice(None)
                   for i in range(x.ndim))]


def _swap(x, axes):
    return np.swapaxes(x, -1, -2) if axes is None else np.swapaxes(x, *axes)


# ---- the table ----------------------------------------------------------------------------
_positive = {"low": 0.1, "high": 5.0}

SPECS = [
    # elementwise
    OpSpec("add", "elementwise", _two(), ndl.add, np.add),
    OpSpec("add_scalar", "elementwise", _with_scalar(st.floats(-3, 3)),
           ndl.add_scalar, lambda x, scalar: x + scalar),
    OpSpec("multiply", "elementwise", _two(), ndl.multiply, np.multiply),
    OpSpec("mul_scalar", "elementwise", _with_scalar(st.floats(-3, 3)),
           ndl.mul_scalar, lambda x, scalar: x * scalar),
    OpSpec("power", "elementwise",
           _two(lambda s: arrays(s, 0.5, 2.0), lambda s: arrays(s, -2.0, 2.0)),
           ndl.power, np.power),
    OpSpec("power_scalar", "elementwise", _power_scalar(), ndl.power_scalar,
           lambda x, scalar: np.power(x, float(scalar))),
    OpSpec("divide", "elementwise", _two(second=lambda s: away_from(s, gap=0.5, spread=2.0)),
           ndl.divide, np.divide),
    OpSpec("divide_scalar", "elementwise", _with_scalar(_nonzero_scalars()),
           ndl.divide_scalar, lambda x, scalar: x / scalar),
    OpSpec("negate", "elementwise", _one(), ndl.negate, np.negative),
    OpSpec("log", "elementwise", _one(**_positive), ndl.log, np.log),
    OpSpec("exp", "elementwise", _one(), ndl.exp, np.exp),
    OpSpec("relu", "elementwise", _one(away_from), ndl.relu, lambda x: x * (x > 0)),
    OpSpec("tanh", "elementwise", _one(), ndl.tanh, np.tanh),
    OpSpec("sigmoid", "elementwise", _one(low=-6.0, high=6.0), ndl.sigmoid, _sigmoid),
    OpSpec("leaky_relu", "elementwise",
           _with_scalar(st.floats(0.0, 0.5), values=away_from, name="slope"),
           ndl.leaky_relu, lambda x, slope: np.where(x > 0, x, slope * x)),
    OpSpec("abs", "elementwise", _one(away_from), ndl.abs, np.abs),
    OpSpec("sqrt", "elementwise", _one(**_positive), ndl.sqrt, np.sqrt),
    OpSpec("maximum", "elementwise", _pair_apart(), ndl.maximum, np.maximum),
    OpSpec("minimum", "elementwise", _pair_apart(), ndl.minimum, np.minimum),
    OpSpec("softplus", "elementwise", _one(low=-10.0, high=10.0), ndl.softplus,
           lambda x: np.log1p(np.exp(x))),
    OpSpec("log_sigmoid", "elementwise", _one(low=-10.0, high=10.0), ndl.log_sigmoid,
           lambda x: -np.log1p(np.exp(-x))),
    OpSpec("clip", "elementwise", _clip(), ndl.clip, lambda x, low, high: np.clip(x, low, high)),
    # reductions: float32 sums of up to 625 terms need a looser tolerance
    OpSpec("summation", "reduction", _reduction(), ndl.summation,
           lambda x, axes: np.sum(x, axis=axes), atol32=1e-4),
    OpSpec("mean", "reduction", _reduction(), ndl.mean,
           lambda x, axes: np.mean(x, axis=axes), atol32=1e-4),
    OpSpec("logsumexp", "reduction", _reduction(), ndl.logsumexp, _logsumexp, atol32=1e-4),
    # float32 rounding of x - mean is amplified by up to 1 / sqrt(eps) ~ 316
    OpSpec("normalize", "reduction", _normalization(), ndl.normalize, _normalize, atol32=1e-3),
    OpSpec("batch_normalize", "reduction", _batch_normalization(), ndl.batch_normalize,
           _batch_normalize, atol32=3e-3),
    OpSpec("logsoftmax", "reduction", _reduction(min_dims=2, max_dims=2),
           lambda x, axes: ndl.logsoftmax(x),
           lambda x, axes: x - np.logaddexp.reduce(x, axis=1, keepdims=True), atol32=1e-4),
    # shape
    OpSpec("broadcast_to", "shape", _broadcast(), ndl.broadcast_to,
           lambda x, shape: np.broadcast_to(x, shape)),
    OpSpec("reshape", "shape", _reshape(), ndl.reshape, lambda x, shape: x.reshape(shape)),
    OpSpec("transpose", "shape", _transpose(), ndl.transpose, _swap),
    OpSpec("permute", "shape", _permute(), ndl.permute, lambda x, axes: np.transpose(x, axes)),
    OpSpec("stack", "shape", _stack(), lambda *xs, axis: ndl.stack(list(xs), axis),
           lambda *xs, axis: np.stack(xs, axis)),
    OpSpec("split", "shape", _split(), lambda x, axis: ndl.split(x, axis).tuple(),
           lambda x, axis: [np.take(x, i, axis) for i in range(x.shape[axis])]),
    OpSpec("concatenate", "shape", _concatenate(),
           lambda *xs, axis: ndl.concatenate(list(xs), axis),
           lambda *xs, axis: np.concatenate(xs, axis)),
    OpSpec("sections", "shape", _sections(),
           lambda x, sizes, axis: ndl.sections(x, sizes, axis).tuple(),
           lambda x, sizes, axis: np.split(x, np.cumsum(sizes)[:-1], axis)),
    OpSpec("flip", "shape", _flip(), ndl.flip, lambda x, axes: np.flip(x, axes)),
    OpSpec("dilate", "shape", _dilation(), ndl.dilate, _dilate),
    OpSpec("undilate", "shape", _dilation(), ndl.undilate, _undilate),
    # matmul: sums of at most 5 products
    OpSpec("matmul", "matmul", _matmul(), ndl.matmul, np.matmul),
]


def family(name):
    specs = [spec for spec in SPECS if spec.family == name]
    assert specs, f"no op specs for family {name!r}"
    return specs


# ---- the generic checks --------------------------------------------------------------------
def _outputs(result):
    if isinstance(result, (ndl.Tensor, np.ndarray, np.generic)):
        return [result]
    if isinstance(result, ndl.TensorTuple):
        return list(result.tuple())
    return list(result)


def check_forward(spec, case, device, dtype, layouts=None):
    """needle on `device` in `dtype` vs the float64 NumPy reference on the same values.

    `layouts` (one per input) rebuild the inputs as non-contiguous views first.
    """
    values = [x.astype(dtype) for x in case.arrays]
    if layouts is None:
        tensors = [ndl.Tensor(x, device=device, dtype=dtype) for x in values]
    else:
        tensors, values = zip(*(layout.build(x, device, dtype)
                                for layout, x in zip(layouts, values)))
    outputs = _outputs(spec.op(*tensors, **case.params))
    expected = _outputs(spec.reference(*[np.asarray(x, np.float64) for x in values],
                                       **case.params))
    assert len(outputs) == len(expected)
    tolerance = spec.atol32 if dtype == "float32" else 1e-10
    for out, ref in zip(outputs, expected):
        assert out.shape == np.shape(ref), f"{spec.name}: shape {out.shape} vs {np.shape(ref)}"
        assert out.dtype == dtype, f"{spec.name}: dtype {out.dtype}, inputs {dtype}"
        assert out.device == device
        np.testing.assert_allclose(out.numpy(), ref, rtol=tolerance, atol=tolerance,
                                   err_msg=spec.name)


def check_gradients(spec, case, device, second_order=False):
    """float64 gradcheck (or gradgradcheck) of the op at the case's values on `device`."""
    tensors = [ndl.Tensor(x, device=device, dtype="float64") for x in case.arrays]
    assert all(t.dtype == "float64" for t in tensors)

    def op(*xs):
        return spec.op(*xs, **case.params)

    check = gradgradcheck if second_order else gradcheck
    assert check(op, *tensors, name=spec.name)
