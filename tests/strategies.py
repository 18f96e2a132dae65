"""Hypothesis strategies shared by the whole suite (minitorch's `tensor_strategies`).

Shapes have 1-4 dims of 1-5 elements, so one example stays cheap. Values are float64 arrays
that each op's spec shifts into its domain (positive for log, away from 0 for relu, ...).
`layouts()` rebuilds a NumPy array as a non-contiguous Tensor view, so ops are also tested on
permuted, strided and broadcast inputs, not only on freshly packed ones.
"""
import math

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import needle as ndl

__all__ = ["shapes", "arrays", "away_from", "reduction_axes", "permutations", "Layout",
           "broadcast_source_shapes", "reshape_targets", "slices", "layouts", "matmul_shapes",
           "grad_settings"]


def grad_settings(divisor=3):
    """Fewer examples for the numeric checks, scaled with the active profile."""
    return settings(max_examples=max(4, settings.default.max_examples // divisor))


def shapes(min_dims=1, max_dims=4, min_side=1, max_side=5):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def _floats(low, high):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def arrays(shape, low=-3.0, high=3.0):
    """float64 arrays of `shape` with values in [low, high]."""
    return hnp.arrays(np.float64, shape, elements=_floats(low, high))


def away_from(shape, point=0.0, gap=0.1, spread=3.0):
    """Values in point +- [gap, spread]: keeps gradchecks off the kink at `point`."""
    below = _floats(point - spread, point - gap)
    elements = st.one_of(below, _floats(point + gap, point + spread))
    return hnp.arrays(np.float64, shape, elements=elements)


@st.composite
def reduction_axes(draw, ndim):
    """None, an int (maybe negative) or a tuple of distinct axes (maybe negative)."""
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(axis - ndim if draw(st.booleans()) else axis for axis in chosen)


def permutations(ndim):
    return st.permutations(range(ndim)).map(tuple)


@st.composite
def broadcast_source_shapes(draw, target, min_dims=0):
    """A shape that broadcasts to `target`: leading axes dropped, some sides set to 1."""
    dropped = draw(st.integers(0, len(target) - min_dims))
    return tuple(1 if draw(st.booleans()) else d for d in target[dropped:])


def _prime_factors(n):
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@st.composite
def reshape_targets(draw, shape):
    """Another shape with as many elements (1-4 dims), sometimes with one side as -1."""
    ndim = draw(st.integers(1, 4))
    target = [1] * ndim
    for factor in _prime_factors(math.prod(shape)):
        target[draw(st.integers(0, ndim - 1))] *= factor
    if draw(st.booleans()):
        target[draw(st.integers(0, ndim - 1))] = -1
    return tuple(target)


@st.composite
def matmul_shapes(draw):
    """(a_shape, b_shape) for a @ b: 2-D, or batched with NumPy batch broadcasting."""
    m, n, p = (draw(st.integers(1, 5)) for _ in range(3))
    batch = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    batch_a = draw(broadcast_source_shapes(batch))
    batch_b = draw(broadcast_source_shapes(batch))
    return batch_a + (m, n), batch_b + (n, p)


@st.composite
def slices(draw, shape):
    """One slice per axis with a positive step (NDArray supports no negative steps)."""
    result = []
    for side in shape:
        start = draw(st.integers(0, side - 1))
        stop = draw(st.integers(start + 1, side))
        result.append(slice(start, stop, draw(st.integers(1, 3))))
    return tuple(result)


class Layout:
    """Builds a Tensor equal to an array, as a view of the drawn kind (not a packed copy)."""

    def __init__(self, kind, permutation=None):
        self.kind = kind
        self.permutation = permutation

    def __repr__(self):
        return f"Layout({self.kind!r}, {self.permutation})"

    def build(self, values, device, dtype):
        """(Tensor, the values it holds): broadcast replaces `values` by its first slice."""
        def tensor(array):
            return ndl.Tensor(np.ascontiguousarray(array), device=device, dtype=dtype)

        if self.kind == "permuted":
            inverse = np.argsort(self.permutation)
            return ndl.permute(tensor(np.transpose(values, inverse)), self.permutation), values
        if self.kind == "strided":
            # every other element of a twice-as-long buffer: a stepped view via undilate
            axes = tuple(range(values.ndim))
            base = np.full(tuple(2 * d for d in values.shape), np.nan)
            base[tuple(slice(None, None, 2) for _ in axes)] = values
            return ndl.undilate(tensor(base), axes, 1), values
        if self.kind == "broadcast":
            first = values[:1]
            return ndl.broadcast_to(tensor(first), values.shape), \
                np.broadcast_to(first, values.shape)
        return tensor(values), values


@st.composite
def layouts(draw, ndim):
    """A non-contiguous layout for arrays of `ndim` dims (0-d arrays stay as they are)."""
    if ndim == 0:
        return Layout("contiguous")
    kind = draw(st.sampled_from(["permuted", "strided", "broadcast"]))
    permutation = draw(permutations(ndim)) if kind == "permuted" else None
    return Layout(kind, permutation)
