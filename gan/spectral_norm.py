"""Spectral normalisation of a layer's weight (Miyato et al. 2018, "Spectral Normalization for
Generative Adversarial Networks", ICLR 2018).

    W_SN = W / sigma(W),   sigma(W) = the largest singular value of W as an (out, rest) matrix

sigma is estimated by power iteration with a persistent left vector u (and right vector v):
each training forward runs `n_power_iterations` steps of

    u <- normalize(W v),   v <- normalize(W^T u),   normalize(x) = x / max(||x||_2, eps)

and then sigma = u^T W v. That is torch.nn.utils.parametrizations.spectral_norm's algorithm and
order; like it, u and v start as normalised N(0, 1) draws (here from NumPy's global RNG, u then
v) followed by 15 steps at construction, and u, v are constants in the gradient, so
d sigma / dW = u v^T and gradient penalties differentiate through sigma (double backward). In
eval mode u and v stay frozen and sigma comes from the stored pair.

The (out, rest) matrix is PyTorch's for each layer, so u and v are interchangeable with
PyTorch's `_u`, `_v`: Linear's (in, out) weight is transposed to (out, in); Conv2d's and the
course Conv's (K, K, Cin, Cout) become (Cout, Cin * K * K) in PyTorch's (Cin, K, K) order; and
ConvTranspose2d's (K, K, Cout, Cin) becomes (Cout, Cin * K * K), as PyTorch's dim=1 for
transposed convs does. Any other layer's weight is read as PyTorch's dim=0: (shape[0], rest).

    D = spectral_norm(Discriminator(norm="none"))    # every Linear/Conv below D, in place
    D.state_dict()   # {"features.modules.0.layer.weight", "features.modules.0.weight_u",
                     #  "features.modules.0.weight_v", ..., "head.layer.weight", ...}
"""
import numpy as np

from needle import nn, no_grad, ops
from needle.autograd import Tensor
from needle.nn import Module, Parameter

__all__ = ["SpectralNorm", "spectral_norm"]

_WARMUP_ITERATIONS = 15  # PyTorch's, so u and v start close to the singular vectors

# Our weight axes -> PyTorch's (out, in, K, K) order, before flattening the axes after `out`.
_TO_OUT_FIRST = ((nn.Linear, (1, 0)),
                 (nn.Conv, (3, 2, 0, 1)),
                 (nn.Conv2d, (3, 2, 0, 1)),
                 (nn.ConvTranspose2d, (2, 3, 0, 1)))
_LAYER_TYPES = tuple(layer_type for layer_type, _ in _TO_OUT_FIRST)


def _normalized(x, eps):
    """x / max(||x||_2, eps), PyTorch's F.normalize, for a column (n, 1)."""
    norm = ops.clip(ops.sqrt(ops.summation(x * x)), eps, float("inf"))
    return x / ops.broadcast_to(ops.reshape(norm, (1, 1)), x.shape)


def _random_unit_vector(n, like):
    draw = np.random.standard_normal(n)
    draw = draw / max(np.linalg.norm(draw), 1e-12)
    return Tensor(draw, device=like.device, dtype=like.dtype, requires_grad=False)


class SpectralNorm(Module):
    """Run `layer` with its weight divided by its spectral norm (see the module docstring).

    `layer` is any Module with a `.weight` Parameter; that Parameter stays the one the
    optimizer trains (`sn.layer.weight`), and the power-iteration vectors are the buffers
    `weight_u` (out,) and `weight_v` (rest,). `sigma()` is the current estimate, a Tensor
    differentiable in the weight.

        sn = SpectralNorm(nn.Linear(4, 3))
        sn(x)                      # one power-iteration step, then x (W / sigma) + b
        sn.eval(); sn(x)           # u and v frozen
    """

    def __init__(self, layer, n_power_iterations=1, eps=1e-12):
        super().__init__()
        if isinstance(layer, SpectralNorm):
            raise ValueError(f"SpectralNorm: {layer!r} is already spectrally normalised")
        if not isinstance(getattr(layer, "weight", None), Parameter):
            raise ValueError(f"SpectralNorm: {type(layer).__name__} has no .weight Parameter "
                             "to normalise")
        if isinstance(n_power_iterations, bool) or int(n_power_iterations) != n_power_iterations \
                or n_power_iterations < 1:
            raise ValueError(f"SpectralNorm: n_power_iterations must be an integer >= 1, got "
                             f"{n_power_iterations!r}")
        if not eps > 0:
            raise ValueError(f"SpectralNorm: eps must be > 0, got {eps!r}")
        self.layer = layer
        self.n_power_iterations, self.eps = int(n_power_iterations), float(eps)
        self._axes = next((axes for layer_type, axes in _TO_OUT_FIRST
                           if isinstance(layer, layer_type)), None)
        rows, columns = self._matrix(layer.weight).shape
        self.register_buffer("weight_u", _random_unit_vector(rows, layer.weight))
        self.register_buffer("weight_v", _random_unit_vector(columns, layer.weight))
        self._power_iteration(_WARMUP_ITERATIONS)

    def _matrix(self, weight):
        """The weight as PyTorch's (out, rest) matrix, built with ops (so differentiable)."""
        if self._axes is not None:
            weight = ops.permute(weight, self._axes)
        return ops.reshape(weight, (weight.shape[0], -1))

    def _power_iteration(self, steps):
        with no_grad():
            W = self._matrix(self.layer.weight.detach())
            u = ops.reshape(self.weight_u, (-1, 1))
            v = ops.reshape(self.weight_v, (-1, 1))
            for _ in range(steps):
                u = _normalized(W @ v, self.eps)
                v = _normalized(ops.transpose(W) @ u, self.eps)
            self.weight_u = ops.reshape(u, (u.shape[0],))
            self.weight_v = ops.reshape(v, (v.shape[0],))

    def sigma(self):
        """u^T W v from the stored u, v: a 0-d Tensor, differentiable in the weight only."""
        W = self._matrix(self.layer.weight)
        u = ops.reshape(self.weight_u.detach(), (1, -1))
        v = ops.reshape(self.weight_v.detach(), (-1, 1))
        return ops.reshape(u @ (W @ v), ())

    def forward(self, *args, **kwargs):
        if self.training:
            self._power_iteration(self.n_power_iterations)
        weight = self.layer.weight
        sigma = ops.broadcast_to(ops.reshape(self.sigma(), (1,) * weight.ndim), weight.shape)
        # The layer reads .weight at call time: lend it W / sigma for this one call.
        self.layer.weight = weight / sigma
        try:
            return self.layer(*args, **kwargs)
        finally:
            self.layer.weight = weight

    def __repr__(self):
        return f"SpectralNorm({self.layer!r}, n_power_iterations={self.n_power_iterations})"


def spectral_norm(module, n_power_iterations=1, eps=1e-12):
    """Wrap every Linear, Conv, Conv2d and ConvTranspose2d at or below `module` in SpectralNorm.

    Layers are replaced in place in their parent's attributes, lists, tuples (Sequential's
    `modules`) and dicts, so the model's Parameters, and any optimizer holding them, stay the
    same objects; a layer reached twice (shared) gets one wrapper. Returns `module`, or its
    wrapper when `module` is itself such a layer. A module that already holds a SpectralNorm
    is refused (ValueError), so a second call cannot normalise a weight twice.

        D = spectral_norm(Discriminator(norm="none"))
    """
    if not isinstance(module, Module):
        raise TypeError(f"spectral_norm: expected a needle Module, got {type(module).__name__}")
    wrapped = [name or "<the module itself>" for name, kind, value in
               [("", "module", module), *module._walk()]
               if kind == "module" and isinstance(value, SpectralNorm)]
    if wrapped:
        raise ValueError(f"spectral_norm: {type(module).__name__} already holds spectrally "
                         f"normalised layers ({', '.join(wrapped)}); apply it once")
    if isinstance(module, _LAYER_TYPES):
        return SpectralNorm(module, n_power_iterations, eps)
    wrappers, visited = {}, set()

    def wrap(value):
        if isinstance(value, _LAYER_TYPES):
            if id(value) not in wrappers:
                wrappers[id(value)] = SpectralNorm(value, n_power_iterations, eps)
            return wrappers[id(value)]
        if isinstance(value, Module):
            visit(value)
        elif isinstance(value, list):
            value[:] = [wrap(item) for item in value]
        elif isinstance(value, dict):
            for key in value:
                value[key] = wrap(value[key])
        elif isinstance(value, tuple):
            items = [wrap(item) for item in value]
            if any(new is not old for new, old in zip(items, value)):
                return tuple(items)
        return value

    def visit(parent):
        if id(parent) in visited:
            return
        visited.add(id(parent))
        for key, value in list(vars(parent).items()):
            if key not in parent._buffers:
                replacement = wrap(value)
                if replacement is not value:
                    setattr(parent, key, replacement)

    visit(module)
    if not wrappers:
        raise ValueError(f"spectral_norm: {type(module).__name__} holds no Linear, Conv, "
                         "Conv2d or ConvTranspose2d layer to normalise")
    return module
