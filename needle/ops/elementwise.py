"""Elementwise ops: arithmetic, activations and the stable log-sigmoid family.

Every gradient is built from ops, so each is twice differentiable where the math is; masks of
piecewise ops (relu, leaky_relu, abs, clip, maximum) are constants. Conventions at kinks: relu'(0)
= 0, abs'(0) = 0, leaky_relu'(0) = slope, maximum/minimum split ties evenly (as PyTorch does).
"""
from ..autograd import Tensor, TensorOp, records_graph
from ..backend_selection import BACKEND, array_api

__all__ = ["EWiseAdd", "AddScalar", "EWiseMul", "MulScalar", "EWisePow", "PowerScalar",
           "EWiseDiv", "DivScalar", "Negate", "Log", "Exp", "ReLU", "Tanh", "Sigmoid",
           "LeakyReLU", "Abs", "Sqrt", "Maximum", "Softplus", "Clip", "GradReverse",
           "add", "add_scalar", "multiply", "mul_scalar", "power", "power_scalar", "divide",
           "divide_scalar", "negate", "log", "exp", "relu", "tanh", "sigmoid", "leaky_relu",
           "abs", "sqrt", "maximum", "minimum", "softplus", "log_sigmoid", "clip",
           "grad_reverse"]


def _check_same_shape(name, a, b):
    """The NDArray flavour never broadcasts implicitly; the NumPy flavour follows NumPy
    (COURSE_API.md sec. 3.6), its gradients summed back to each input's shape (Op)."""
    if a.shape != b.shape and BACKEND == "nd":
        raise ValueError(f"{name}: shape mismatch {a.shape} vs {b.shape} "
                         "(needle never broadcasts implicitly; use broadcast_to)")


def _scalar(value):
    """A Python number: NumPy scalars and 1-element arrays would change the result dtype."""
    return value.item() if hasattr(value, "item") else value


def _mask(condition, like):
    """A 0/1 constant Tensor of `like`'s dtype from a boolean or 0/1 array."""
    return Tensor.make_const(condition.astype(like.dtype))


def _fused_leaky_relu_grad(a, out_grad, slope):
    """a > 0 ? g : slope * g as the device's one-pass kernel, a constant Tensor; None when a
    graph must be recorded or the device has no such kernel (the caller's ops then)."""
    if records_graph(out_grad):
        return None
    fused = array_api.fused("leaky_relu_grad", a, out_grad.realize_cached_data(), slope=slope)
    return None if fused is None else Tensor.make_const(fused)


class EWiseAdd(TensorOp):
    def compute(self, a, b):
        _check_same_shape("add", a, b)
        return a + b

    def gradient(self, out_grad, node):
        return out_grad, out_grad


def add(a, b):
    return EWiseAdd()(a, b)


class AddScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = _scalar(scalar)

    def compute(self, a):
        return a + self.scalar

    def gradient(self, out_grad, node):
        return out_grad


def add_scalar(a, scalar):
    return AddScalar(scalar)(a)


class EWiseMul(TensorOp):
    def compute(self, a, b):
        _check_same_shape("multiply", a, b)
        return a * b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * b, out_grad * a


def multiply(a, b):
    return EWiseMul()(a, b)


class MulScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = _scalar(scalar)

    def compute(self, a):
        return a * self.scalar

    def gradient(self, out_grad, node):
        return out_grad * self.scalar


def mul_scalar(a, scalar):
    return MulScalar(scalar)(a)


class EWisePow(TensorOp):
    """a ** b elementwise with C's pow, as NumPy and PyTorch compute it: pow(x, 0) = 1 (NaN
    and inf included), negative bases to integer powers keep their sign ((-2)^3 = -8), NaN
    only for a negative base to a non-integer power. Gradients follow PyTorch's conventions:
    d/da = b a^(b-1), taken as 0 where b = 0; d/db = a^b log(a), taken as 0 where a = 0 and
    b >= 0, and NaN for a < 0 (a^b is not differentiable in b there)."""

    def compute(self, a, b):
        _check_same_shape("power", a, b)
        return a ** b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        a_data, b_data = a.realize_cached_data(), b.realize_cached_data()
        # PyTorch selects 0 at those points; a product with a 0/1 mask would give 0 * inf =
        # NaN there, so the masks move the arguments off the poles instead (a^-1 -> a^0 at
        # a = 0 or NaN, log(0) -> log(1)), and only at the poles: the masks are constants,
        # so elsewhere the second derivatives stay those of the formulas.
        pole = _mask((b_data == 0) * ((a_data == 0) + (a_data != a_data)), out_grad)
        flat = _mask((a_data == 0) * (b_data >= 0), out_grad)
        return out_grad * b * power(a, b - 1 + pole), out_grad * node * log(a + flat)


def power(a, b):
    return EWisePow()(a, b)


def _small_integer(scalar):
    """`scalar` as an int when it is a whole number from -4 to 4, else None."""
    if isinstance(scalar, (int, float)) and float(scalar).is_integer() and -4 <= scalar <= 4:
        return int(scalar)
    return None


def _integer_power(a, k):
    """a ** k for a whole k, 2 <= |k| <= 4, as products (x * x * x for 3) and, for k < 0, one
    reciprocal: within 3.5 ulp of the correctly rounded power (measured over 1M normal
    draws in float32 and float64), bit for bit where the power is exact or one rounding
    away, and signs, zeros and infinities as pow gives them ((-0)^-3 = -inf, (-inf)^-3 = -0)."""
    n = -k if k < 0 else k
    square = a * a
    result = square * square if n == 4 else (square * a if n == 3 else square)
    return 1 / result if k < 0 else result


class PowerScalar(TensorOp):
    """a ** scalar for any real scalar (negative, fractional, zero).

    Whole exponents from -4 to 4 are NumPy's own fast paths (0, 1, 2 and -1: exact) or
    products (`_integer_power`), since NumPy's pow takes ~100x longer than a multiply;
    the rest go through pow.
    """

    def __init__(self, scalar):
        self.scalar = _scalar(scalar)

    def compute(self, a):
        k = _small_integer(self.scalar)
        if k is None or k in (0, 1, 2, -1) or str(a.dtype) not in ("float32", "float64"):
            return a ** self.scalar
        return _integer_power(a, k)

    def gradient(self, out_grad, node):
        if self.scalar == 0:
            return out_grad * 0
        a = node.inputs[0]
        return out_grad * (a ** (self.scalar - 1) * self.scalar)


def power_scalar(a, scalar):
    return PowerScalar(scalar)(a)


class EWiseDiv(TensorOp):
    def compute(self, a, b):
        _check_same_shape("divide", a, b)
        return a / b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad / b, -out_grad * a / (b * b)


def divide(a, b):
    return EWiseDiv()(a, b)


class DivScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = _scalar(scalar)

    def compute(self, a):
        return a / self.scalar

    def gradient(self, out_grad, node):
        return out_grad / self.scalar


def divide_scalar(a, scalar):
    return DivScalar(scalar)(a)


class Negate(TensorOp):
    def compute(self, a):
        return -a

    def gradient(self, out_grad, node):
        return -out_grad


def negate(a):
    return Negate()(a)


class GradReverse(TensorOp):
    """Gradient reversal (Ganin & Lempitsky 2015): the identity forward, -scale times the
    gradient backward, so the layers below it climb the loss that the layers above descend
    (domain-adversarial training). The backward is a scaling, so it is itself differentiable
    (and its derivative reverses again)."""

    def __init__(self, scale=1.0):
        self.scale = _scalar(scale)

    def compute(self, a):
        return a

    def gradient(self, out_grad, node):
        return out_grad * -self.scale


def grad_reverse(a, scale=1.0):
    return GradReverse(scale)(a)


class Log(TensorOp):
    def compute(self, a):
        return array_api.log(a)

    def gradient(self, out_grad, node):
        return out_grad / node.inputs[0]


def log(a):
    return Log()(a)


class Exp(TensorOp):
    def compute(self, a):
        return array_api.exp(a)

    def gradient(self, out_grad, node):
        return out_grad * node


def exp(a):
    return Exp()(a)


class ReLU(TensorOp):
    def compute(self, a):
        return array_api.maximum(a, 0)

    def gradient(self, out_grad, node):
        a = node.inputs[0].realize_cached_data()
        # at slope 0 the kernel's a > 0 ? g : 0 * g is the bits of g * mask (a zero of the
        # mask keeps g's sign and turns inf to NaN alike)
        fused = _fused_leaky_relu_grad(a, out_grad, 0.0)
        if fused is not None:
            return fused
        return out_grad * _mask(a > 0, out_grad)


def relu(a):
    return ReLU()(a)


class Tanh(TensorOp):
    def compute(self, a):
        return array_api.tanh(a)

    def gradient(self, out_grad, node):
        return out_grad * (1 - node * node)


def tanh(a):
    return Tanh()(a)


class Sigmoid(TensorOp):
    """1 / (1 + e^-a) for a >= 0 and e^a / (1 + e^a) below, as one expression:
    e^min(a, 0) / (1 + e^-|a|). Nothing overflows, and both tails keep full relative accuracy
    down to the smallest normal float. The derivative is taken as sigmoid(a) sigmoid(-a),
    which keeps it too (sigmoid(a) (1 - sigmoid(a)) rounds to 0 for a >= 17 in float32).
    """

    def compute(self, a):
        negated = -a
        return array_api.exp(-array_api.maximum(negated, 0)) / (
            array_api.exp(-array_api.maximum(a, negated)) + 1)

    def gradient(self, out_grad, node):
        return out_grad * node * sigmoid(-node.inputs[0])


def sigmoid(a):
    return Sigmoid()(a)


class LeakyReLU(TensorOp):
    """max(a, 0) + slope * min(a, 0); the derivative at 0 is taken as `slope`."""

    def __init__(self, slope=0.01):
        self.slope = _scalar(slope)

    def compute(self, a):
        fused = array_api.fused("leaky_relu", a, slope=self.slope)  # one kernel where the device has it
        if fused is not None:
            return fused
        if 0 <= self.slope <= 1:
            return array_api.maximum(a, a * self.slope)  # two passes instead of four
        return array_api.maximum(a, 0) + array_api.maximum(-a, 0) * -self.slope

    def gradient(self, out_grad, node):
        a = node.inputs[0].realize_cached_data()
        fused = _fused_leaky_relu_grad(a, out_grad, self.slope)
        if fused is not None:
            return fused
        positive = (a > 0).astype(out_grad.dtype)
        # 1 or slope exactly (positive * (1 - slope) + slope rounds 1 to 1 + 1 ulp)
        return out_grad * Tensor.make_const(positive + (1 - positive) * self.slope)


def leaky_relu(a, slope=0.01):
    return LeakyReLU(slope)(a)


class Abs(TensorOp):
    def compute(self, a):
        return array_api.maximum(a, -a)

    def gradient(self, out_grad, node):
        a, dtype = node.inputs[0].realize_cached_data(), out_grad.dtype
        return out_grad * Tensor.make_const((a > 0).astype(dtype) - (a < 0).astype(dtype))


def abs(a):
    return Abs()(a)


class Sqrt(TensorOp):
    def compute(self, a):
        return a ** 0.5

    def gradient(self, out_grad, node):
        return out_grad / (node * 2)


def sqrt(a):
    return Sqrt()(a)


class Maximum(TensorOp):
    def compute(self, a, b):
        _check_same_shape("maximum", a, b)
        return array_api.maximum(a, b)

    def gradient(self, out_grad, node):
        a, b = (x.realize_cached_data() for x in node.inputs)
        share_a = (a > b).astype(out_grad.dtype) + (a == b).astype(out_grad.dtype) * 0.5
        share_a = Tensor.make_const(share_a)
        return out_grad * share_a, out_grad * (1 - share_a)


def maximum(a, b):
    return Maximum()(a, b)


def minimum(a, b):
    """min(a, b) = -max(-a, -b)."""
    return negate(maximum(negate(a), negate(b)))


def _log1p(z):
    """log(1 + z) for arrays z in [0, 1] (or NaN), to full relative accuracy for tiny z: the
    log of u = 1 + z, corrected by u's rounding error (u - 1) - z, which is exact. Without
    the correction log(1 + z) is 0 for z below half an ulp of 1."""
    u = z + 1
    return array_api.log(u) - ((u - 1) - z) / u


class Softplus(TensorOp):
    """log(1 + e^a), computed as max(a, 0) + log1p(e^-|a|): no overflow, and full relative
    accuracy in both tails (softplus(-40) = 4.2e-18, where log(1 + e^-40) rounds to 0)."""

    def compute(self, a):
        return array_api.maximum(a, 0) + _log1p(array_api.exp(-array_api.maximum(a, -a)))

    def gradient(self, out_grad, node):
        return out_grad * sigmoid(node.inputs[0])


def softplus(a):
    return Softplus()(a)


def log_sigmoid(a):
    """log(sigmoid(a)) = -softplus(-a) = min(a, 0) - log1p(e^-|a|), accurate for logits of
    any size; its derivative is sigmoid(-a)."""
    return negate(softplus(negate(a)))


class Clip(TensorOp):
    """Clamp to [low, high]; the gradient passes where low <= a <= high."""

    def __init__(self, low, high):
        if low > high:
            raise ValueError(f"clip: low {low} is greater than high {high}")
        self.low, self.high = _scalar(low), _scalar(high)

    def compute(self, a):
        return -array_api.maximum(-array_api.maximum(a, self.low), -self.high)

    def gradient(self, out_grad, node):
        a = node.inputs[0].realize_cached_data()
        inside = (a >= self.low).astype(out_grad.dtype) * (a <= self.high).astype(out_grad.dtype)
        return out_grad * _mask(inside, out_grad)


def clip(a, low, high):
    return Clip(low, high)(a)
