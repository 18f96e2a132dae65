"""Parameter and Module: the machinery every layer shares (COURSE_API.md section 6.1).

A Module finds its parameters by walking its attributes (`__dict__`) in insertion order,
recursing into Modules, dicts, lists and tuples. There is no registration step for parameters:
assigning a `Parameter` to an attribute is enough, and `forward` reads attributes at call time,
so replacing `layer.weight` takes effect on the next call.

Buffers (state that is saved but not trained, such as BatchNorm's running statistics) are plain
Tensors named by `register_buffer(name, tensor)`. The module keeps the *name* in `_buffers`, so
a buffer stays registered when its attribute is later reassigned, and plain Tensors never show
up in `parameters()`.

    class Affine(Module):
        def __init__(self, dim):
            super().__init__()
            self.scale = Parameter(init.ones(dim))
            self.register_buffer("calls", init.zeros(1))

        def forward(self, x):
            return x * self.scale.broadcast_to(x.shape)

    Affine(3).state_dict()    # {"scale": array([1., 1., 1.]), "calls": array([0.])}
"""
from typing import Dict, Iterator, List, NamedTuple, Tuple

import numpy as np

from ..autograd import Tensor

__all__ = ["Parameter", "Module", "LoadResult"]


class Parameter(Tensor):
    """A Tensor that a Module trains: the only kind `Module.parameters()` returns."""


class LoadResult(NamedTuple):
    """What `load_state_dict(..., strict=False)` skipped."""

    missing_keys: List[str]
    unexpected_keys: List[str]


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else str(name)


class Module:
    """Base class of layers and models.

    `training` is True after construction; `train()` / `eval()` set it on the module and on
    every module below it. Calling a module calls `forward`.
    """

    _buffers: Tuple[str, ...] = ()

    def __init__(self):
        self.training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- the attribute walk ------------------------------------------------------------
    def register_buffer(self, name: str, tensor: Tensor):
        """Set attribute `name` to `tensor` and save it in `state_dict` under that name.

        Buffers are not parameters: optimizers never see them. Reassigning the attribute
        later keeps it registered.
        """
        setattr(self, name, tensor)
        if name not in self._buffers:
            self._buffers = self._buffers + (name,)

    def _walk(self) -> Iterator[Tuple[str, str, object]]:
        """Yield (dotted name, kind, object), kind in {"module", "parameter", "buffer"}.

        Order is attribute insertion order, depth first. A module or parameter reached twice
        (shared weights) is yielded once, under its first name.
        """
        seen = {id(self)}

        def visit(value, name):
            if isinstance(value, Parameter):
                if id(value) not in seen:
                    seen.add(id(value))
                    yield name, "parameter", value
            elif isinstance(value, Module):
                if id(value) not in seen:
                    seen.add(id(value))
                    yield name, "module", value
                    yield from members(value, name)
            elif isinstance(value, dict):
                for key, item in value.items():
                    yield from visit(item, _join(name, key))
            elif isinstance(value, (list, tuple)):
                for index, item in enumerate(value):
                    yield from visit(item, _join(name, index))

        def members(module, prefix):
            for key, value in vars(module).items():
                if key in module._buffers and isinstance(value, Tensor):
                    yield _join(prefix, key), "buffer", value
                else:
                    yield from visit(value, _join(prefix, key))

        yield from members(self, "")

    def named_parameters(self) -> List[Tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs, in the order of `parameters()`."""
        return [(name, value) for name, kind, value in self._walk() if kind == "parameter"]

    def parameters(self) -> List[Parameter]:
        """Every Parameter below this module, in attribute insertion order, each once."""
        return [value for _, kind, value in self._walk() if kind == "parameter"]

    def _children(self) -> List["Module"]:
        """Every Module below this one (not itself), in the order of the walk."""
        return [value for _, kind, value in self._walk() if kind == "module"]

    def train(self, mode: bool = True):
        """Set training mode on this module and all modules below it; returns self."""
        self.training = mode
        for child in self._children():
            child.training = mode
        return self

    def eval(self):
        """Evaluation mode (dropout off, BatchNorm uses running statistics); returns self."""
        return self.train(False)

    # ---- state dicts -------------------------------------------------------------------
    def state_dict(self) -> Dict[str, np.ndarray]:
        """Dotted name -> NumPy copy of every parameter and buffer, in walk order."""
        return {name: np.array(value.numpy(), copy=True)
                for name, kind, value in self._walk() if kind != "module"}

    def load_state_dict(self, state, strict: bool = True) -> LoadResult:
        """Copy arrays from `state` (name -> array or Tensor) into parameters and buffers.

        Data is replaced in place (the Parameter objects, and so optimizer references, stay
        the same) and cast to each tensor's dtype; no graph is recorded. With `strict`, a
        missing or an unexpected key is an error; a shape mismatch always is. Errors are
        collected and raised together as one ValueError before anything is changed.
        Returns the missing and unexpected keys.
        """
        targets = {name: value for name, kind, value in self._walk() if kind != "module"}
        missing = [name for name in targets if name not in state]
        unexpected = [name for name in state if name not in targets]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        arrays = {}
        for name, target in targets.items():
            if name not in state:
                continue
            value = state[name]
            arrays[name] = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            if arrays[name].shape != tuple(target.shape):
                problems.append(f"shape mismatch for {name!r}: expected "
                                f"{tuple(target.shape)}, got {arrays[name].shape}")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: "
                             + "; ".join(problems))
        for name, array in arrays.items():
            target = targets[name]
            target.data = Tensor(array.astype(target.dtype), device=target.device,
                                 dtype=target.dtype, requires_grad=False)
        return LoadResult(missing, unexpected)
