"""Numeric gradient checks for use in pytest: first and second derivatives, in float64.

The check compares directional derivatives (Chainer's `check_backward`): along a random
direction v, the analytic <grad, v> must match the central difference
(f(x + eps v) - f(x - eps v)) / (2 eps). That costs two forwards per input instead of two per
element. Only when it fails does the check probe element by element, to report the worst
element: its input, index, analytic and numeric values.

    from needle.gradcheck import gradcheck, gradgradcheck
    x = ndl.Tensor(np.random.randn(3, 4), dtype="float64")   # float64 only on request
    gradcheck(lambda x: ndl.tanh(x) * x, x)          # raises GradcheckError on a mismatch
    gradgradcheck(lambda x: ndl.tanh(x) * x, x)      # the same, for the gradient itself
"""
import numpy as np

from .autograd import Tensor, grad

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]

_MAX_PROBED_ELEMENTS = 4096


class GradcheckError(AssertionError):
    """Analytic and numeric derivatives disagree; the message names the worst element."""


def _as_outputs(result):
    return [result] if isinstance(result, Tensor) else list(result)


def _check_inputs(inputs, name):
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: input {i} is a {type(x).__name__}, expected a Tensor")
        if str(x.dtype) != "float64":
            raise TypeError(f"{name}: input {i} has dtype {x.dtype}; numeric checks need "
                            "float64 (build it with Tensor(..., dtype=\"float64\"))")


def _perturbed(inputs, index, delta):
    moved = list(inputs)
    x = inputs[index]
    moved[index] = Tensor(x.numpy() + delta, device=x.device, dtype="float64")
    return moved


def _projected(fn, inputs, weights):
    """sum_k <fn(inputs)_k, weights_k> as a float."""
    return float(sum(np.sum(out.numpy() * w) for out, w in zip(_as_outputs(fn(*inputs)),
                                                                weights)))


def _close(analytic, numeric, atol, rtol):
    return abs(analytic - numeric) <= atol + rtol * abs(numeric)


def _worst_element(fn, inputs, weights, index, analytic, eps):
    """Element-wise central differences for input `index`: (position, analytic, numeric)."""
    x = inputs[index]
    worst = None
    for flat in range(min(int(np.prod(x.shape)), _MAX_PROBED_ELEMENTS)):
        delta = np.zeros(x.shape)
        delta.flat[flat] = eps
        numeric = (_projected(fn, _perturbed(inputs, index, delta), weights)
                   - _projected(fn, _perturbed(inputs, index, -delta), weights)) / (2 * eps)
        error = abs(analytic.flat[flat] - numeric)
        if worst is None or error > worst[0]:
            worst = (error, np.unravel_index(flat, x.shape), analytic.flat[flat], numeric)
    return worst


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, name=None):
    """Check the first derivatives of `fn` at `inputs` (float64 Tensors).

    `fn` returns a Tensor or a sequence of Tensors; its outputs are projected on fixed random
    weights so one scalar carries every output element. Returns True, or raises
    GradcheckError naming the input, the worst element and both values.
    """
    _check_inputs(inputs, "gradcheck")
    name = name or getattr(fn, "__name__", "fn")
    rng = np.random.default_rng(seed)
    outputs = _as_outputs(fn(*inputs))
    weights = [rng.standard_normal(out.shape) for out in outputs]
    seeds = [Tensor(w, device=out.device, dtype="float64", requires_grad=False)
             for out, w in zip(outputs, weights)]
    analytic = grad(outputs, list(inputs), grad_outputs=seeds, allow_unused=True)
    for index, x in enumerate(inputs):
        analytic_x = np.zeros(x.shape) if analytic[index] is None else analytic[index].numpy()
        direction = rng.standard_normal(x.shape)
        numeric = (_projected(fn, _perturbed(inputs, index, eps * direction), weights)
                   - _projected(fn, _perturbed(inputs, index, -eps * direction), weights)
                   ) / (2 * eps)
        directional = float(np.sum(analytic_x * direction))
        if _close(directional, numeric, atol * (1 + np.sqrt(direction.size)), rtol):
            continue
        error, position, analytic_value, numeric_value = _worst_element(
            fn, inputs, weights, index, analytic_x, eps)
        raise GradcheckError(
            f"gradcheck failed for {name}: input {index} (shape {x.shape}): directional "
            f"derivative analytic {directional:.6g} vs numeric {numeric:.6g}; worst element "
            f"{tuple(int(i) for i in position)}: analytic {analytic_value:.6g}, numeric "
            f"{numeric_value:.6g} (abs error {error:.3g})")
    return True


def gradgradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, name=None):
    """Check the second derivatives of `fn`: gradcheck of x -> d<fn(x), w>/dx.

    This is what a gradient penalty (WGAN-GP, R1) differentiates.
    """
    _check_inputs(inputs, "gradgradcheck")
    name = name or getattr(fn, "__name__", "fn")
    rng = np.random.default_rng(seed + 1)
    outputs = _as_outputs(fn(*inputs))
    weights = [rng.standard_normal(out.shape) for out in outputs]

    def first_derivatives(*xs):
        outs = _as_outputs(fn(*xs))
        seeds = [Tensor(w, device=out.device, dtype="float64", requires_grad=False)
                 for out, w in zip(outs, weights)]
        grads = grad(outs, list(xs), grad_outputs=seeds, create_graph=True, allow_unused=True)
        return [g if g is not None else Tensor(np.zeros(x.shape), device=x.device,
                                               dtype="float64", requires_grad=False)
                for g, x in zip(grads, xs)]

    return gradcheck(first_derivatives, *inputs, eps=eps, atol=atol, rtol=rtol, seed=seed,
                     name=f"gradient of {name}")
