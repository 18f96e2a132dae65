"""Optimizers, gradient clipping and learning-rate schedules (COURSE_API.md section 7).

An update reads each parameter's gradient and writes new parameter storage: it works on the
raw arrays (`realize_cached_data()`: NDArray, or NumPy in the np flavour), so no graph is built
and `.grad` is never modified in place. Hyperparameters are turned into Python floats before
they touch an array, because a NumPy float64 scalar would silently promote float32 parameters
to float64 (NEP 50); the written data must keep the parameter's dtype.

Per-parameter state (`u`, `m`, `v`, `square_avg`) is kept in dicts keyed by the parameter
Tensor, as the course has it. `state_dict()` flattens it to `{"m.3": numpy array, "lr": 0.01,
"t": 7, ...}` keyed by the parameter's index in `params`, so `needle.save` can write it and a
resumed run continues bit for bit.

    opt = ndl.optim.Adam(model.parameters(), lr=2e-4, beta1=0.5)
    opt.reset_grad(); loss.backward(); opt.step()
"""
import math

import numpy as np

from .autograd import Tensor
from .backend_selection import array_api

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "clip_grad_norm", "LRScheduler", "StepLR",
           "LinearDecay"]


def _grad_array(index, param):
    """The gradient of `param` as a raw array of the parameter's dtype, or None."""
    grad = getattr(param, "grad", None)
    if grad is None:
        return None
    grad = grad.realize_cached_data()
    data = param.realize_cached_data()
    if grad.shape != data.shape:
        raise ValueError(f"optimizer: parameter {index} has shape {data.shape} but its grad "
                         f"has shape {grad.shape}")
    return grad if grad.dtype == data.dtype else grad.astype(data.dtype)


def _to_numpy(array):
    return np.array(array) if isinstance(array, np.ndarray) else array.numpy()


def _as_number(value, kind):
    """A Python int/float from a number, a 0-d/1-element array or Tensor (loaded state)."""
    if isinstance(value, Tensor):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected a number, got an array of shape {value.shape}")
        value = value.item()
    return kind(value)


class Optimizer:
    """Base class: holds `params` and the per-parameter state tables.

    Subclasses list their hyperparameters in `_hyper` (floats), step counters in `_counters`
    (ints) and the names of their per-parameter state dicts in `_slots`; state_dict and
    load_state_dict are written once, here.
    """

    _hyper = ("lr",)
    _counters = ()
    _param_counters = ()
    _slots = ()

    def __init__(self, params):
        self.params = list(params)  # a generator (module.parameters()) must survive reuse

    def step(self):
        raise NotImplementedError()

    def reset_grad(self):
        for p in self.params:
            p.grad = None

    zero_grad = reset_grad

    def clip_grad_norm(self, max_norm=0.25):
        """Rescale this optimizer's gradients to total norm <= max_norm (course PTB loop)."""
        return clip_grad_norm(self.params, max_norm)

    def _updates(self):
        """(index, parameter, data, grad) for every parameter that has a gradient."""
        for index, p in enumerate(self.params):
            grad = _grad_array(index, p)
            if grad is not None:
                yield index, p, p.realize_cached_data(), grad

    @staticmethod
    def _write(param, data):
        # A graph-free update: new storage for the leaf, in the parameter's dtype.
        param.cached_data = data

    # ---- checkpoints ------------------------------------------------------------------
    def state_dict(self):
        """A flat {name: number or NumPy array} dict; arrays are keyed "<slot>.<index>"."""
        state = {name: float(getattr(self, name)) for name in self._hyper}
        state.update({name: int(getattr(self, name)) for name in self._counters})
        for name in self._param_counters:
            table = getattr(self, name)
            state.update({f"{name}.{index}": int(table[p])
                          for index, p in enumerate(self.params) if p in table})
        for slot in self._slots:
            table = getattr(self, slot)
            for index, p in enumerate(self.params):
                if p in table:
                    state[f"{slot}.{index}"] = _to_numpy(table[p])
        return state

    def load_state_dict(self, state):
        """Restore `state_dict()` output (also after needle.save/needle.load)."""
        tables = {slot: {} for slot in self._slots}
        counters = {name: {} for name in self._param_counters}
        for key, value in state.items():
            if key in self._hyper or key in self._counters:
                setattr(self, key, _as_number(value, float if key in self._hyper else int))
                continue
            slot, _, index = key.rpartition(".")
            if slot in counters and index.isdigit() and int(index) < len(self.params):
                counters[slot][self.params[int(index)]] = _as_number(value, int)
                continue
            if slot not in tables or not index.isdigit() or int(index) >= len(self.params):
                raise ValueError(f"{type(self).__name__}.load_state_dict: unexpected key "
                                 f"{key!r} (this optimizer has {len(self.params)} parameters "
                                 f"and state {list(self._slots)})")
            p = self.params[int(index)]
            value = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"{type(self).__name__}.load_state_dict: {key!r} has shape "
                                 f"{value.shape} but parameter {index} has shape {p.shape}")
            tables[slot][p] = array_api.array(value, dtype=p.dtype, device=p.device)
        for slot, table in tables.items():
            setattr(self, slot, table)
        for name, table in counters.items():
            setattr(self, name, table)
        self._restore_param_counters(state)

    def _restore_param_counters(self, state):
        """Hook for state saved before per-parameter counters existed (see Adam)."""


class SGD(Optimizer):
    """SGD with L2 weight decay folded into the gradient and dampened momentum.

    g = grad + weight_decay * w;  u = momentum * u + (1 - momentum) * g;  w = w - lr * u.
    The (1 - momentum) dampening is the course's convention (PyTorch's default is none); u
    starts at zero.
    """

    _hyper = ("lr", "momentum", "weight_decay")
    _slots = ("u",)

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.u = {}

    def step(self):
        lr, momentum, decay = float(self.lr), float(self.momentum), float(self.weight_decay)
        for _, p, w, g in self._updates():
            if decay:
                g = g + w * decay
            if momentum:
                u = self.u.get(p)
                g = g * (1 - momentum) if u is None else u * momentum + g * (1 - momentum)
                self.u[p] = g
            self._write(p, w - g * lr)


class Adam(Optimizer):
    """Adam with bias correction; weight decay is L2 folded into the gradient (not AdamW).

    g = grad + weight_decay * w;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    w = w - lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^k),
    v_hat = v / (1 - b2^k), where k counts the steps that updated this parameter, as
    PyTorch's Adam does (a parameter whose first gradient comes at step 5 gets the bias
    correction of its first step). `t` counts step() calls, as the course's Adam does; when
    every parameter has a gradient at every step, k == t and the values are the course's.
    """

    _hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")
    _counters = ("t",)
    _param_counters = ("step_count",)
    _slots = ("m", "v")

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.eps, self.weight_decay = eps, weight_decay
        self.t = 0
        self.m, self.v, self.step_count = {}, {}, {}

    def step(self):
        self.t += 1
        lr, b1, b2 = float(self.lr), float(self.beta1), float(self.beta2)
        eps, decay = float(self.eps), float(self.weight_decay)
        for _, p, w, g in self._updates():
            k = self.step_count.get(p, 0) + 1
            self.step_count[p] = k
            correction1, correction2 = 1 - b1 ** k, 1 - b2 ** k
            if self._fused_step(p, w, g, lr, b1, b2, eps, correction1, correction2, decay):
                continue
            if decay:
                g = g + w * decay
            m, v = self.m.get(p), self.v.get(p)
            m = g * (1 - b1) if m is None else m * b1 + g * (1 - b1)
            v = (g * g) * (1 - b2) if v is None else v * b2 + (g * g) * (1 - b2)
            self.m[p], self.v[p] = m, v
            m_hat, v_hat = m / correction1, v / correction2
            self._write(p, w - m_hat * lr / (v_hat ** 0.5 + eps))

    def _restore_param_counters(self, state):
        # State saved before per-parameter counts: every parameter with moments had
        # stepped t times (the course's single counter).
        for p in self.m:
            self.step_count.setdefault(p, self.t)

    def _fused_step(self, p, w, g, lr, b1, b2, eps, correction1, correction2, decay):
        """The whole update as one kernel where the device has it (cuda()); False if not.
        A parameter's first step (no moments yet) always takes the composite path."""
        if p not in self.m:
            return False
        result = array_api.fused("adam", w, g, self.m[p], self.v[p], lr=lr, beta1=b1,
                                 beta2=b2, one_minus_beta1=1 - b1, one_minus_beta2=1 - b2,
                                 eps=eps, correction1=correction1, correction2=correction2,
                                 decay=decay)
        if result is None:
            return False
        w_new, self.m[p], self.v[p] = result
        self._write(p, w_new)
        return True


class RMSprop(Optimizer):
    """RMSprop as PyTorch defines it (no momentum, not centered).

    g = grad + weight_decay * w;  s = alpha s + (1 - alpha) g^2;  w = w - lr g / (sqrt(s) + eps),
    with s starting at zero.
    """

    _hyper = ("lr", "alpha", "eps", "weight_decay")
    _slots = ("square_avg",)

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.square_avg = {}

    def step(self):
        lr, alpha = float(self.lr), float(self.alpha)
        eps, decay = float(self.eps), float(self.weight_decay)
        for _, p, w, g in self._updates():
            if decay:
                g = g + w * decay
            s = self.square_avg.get(p)
            s = (g * g) * (1 - alpha) if s is None else s * alpha + (g * g) * (1 - alpha)
            self.square_avg[p] = s
            self._write(p, w - g * lr / (s ** 0.5 + eps))


def _to_float(value):
    """A Python float from a reduction result (a (1,) NDArray or a NumPy scalar)."""
    host = value.numpy() if hasattr(value, "numpy") else value
    return float(np.asarray(host).reshape(-1)[0])


def clip_grad_norm(params, max_norm=0.25):
    """Rescale gradients so their global L2 norm is at most `max_norm`; return the norm.

    As torch.nn.utils.clip_grad_norm_: scale = max_norm / (norm + 1e-6), applied when < 1.
    Each scaled gradient is a new constant Tensor in `.grad`; the old one is left untouched.
    """
    grads = [(p, _grad_array(i, p)) for i, p in enumerate(params)]
    grads = [(p, g) for p, g in grads if g is not None]
    if not grads:
        return 0.0
    total = None
    for _, g in grads:  # summed on the device; one host transfer at the end
        square_sum = (g * g).sum()
        total = square_sum if total is None else total + square_sum
    norm = math.sqrt(_to_float(total))
    scale = float(max_norm) / (norm + 1e-6)
    if scale < 1:
        for p, g in grads:
            p.grad = Tensor.make_const(g * scale)
    return norm


class LRScheduler:
    """Sets `optimizer.lr = base_lr * factor(epoch)`; call step() once per epoch."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0

    def factor(self, epoch):
        raise NotImplementedError()

    def get_lr(self, epoch=None):
        return self.base_lr * self.factor(self.last_epoch if epoch is None else epoch)

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.base_lr = _as_number(state["base_lr"], float)
        self.last_epoch = _as_number(state["last_epoch"], int)
        self.optimizer.lr = self.get_lr()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size) (PyTorch's StepLR, closed form)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        super().__init__(optimizer)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def factor(self, epoch):
        return self.gamma ** (epoch // self.step_size)


class LinearDecay(LRScheduler):
    """CycleGAN's schedule: base_lr until `start_epoch`, then linearly to 0 at `total_epochs`.

    factor = 1 for epoch < start_epoch, (total - epoch) / (total - start) up to total_epochs,
    0 afterwards.
    """

    def __init__(self, optimizer, start_epoch, total_epochs):
        if not 0 <= start_epoch < total_epochs:
            raise ValueError(f"LinearDecay: need 0 <= start_epoch < total_epochs, got "
                             f"{start_epoch} and {total_epochs}")
        super().__init__(optimizer)
        self.start_epoch, self.total_epochs = int(start_epoch), int(total_epochs)

    def factor(self, epoch):
        if epoch < self.start_epoch:
            return 1.0
        return max(0.0, (self.total_epochs - epoch) / (self.total_epochs - self.start_epoch))
