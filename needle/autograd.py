"""Tensors and reverse-mode automatic differentiation.

A Tensor is a node in a graph: the Op that made it, its input Tensors and the computed array
(`cached_data`). `Op.gradient` builds gradients from ops, so gradients are Tensors that can
themselves be differentiated: double backward (gradient penalties) needs nothing extra.

Course semantics (COURSE_API.md section 3): `backward()` overwrites `.grad` on every node it
reaches and, by default, stores graph-carrying gradients. `grad()` is the functional,
PyTorch-style alternative with no `.grad` side effects.
"""
import contextlib
import functools
from typing import List, Optional, Tuple

import numpy

from . import backend_selection
from .backend_selection import Device, NDArray, array_api, default_device

# Live Value count: the course's memory tests read it (COURSE_API.md section 3.2).
TENSOR_COUNTER = 0


class _Mode:
    """Process-wide autograd switches, changed only through the context managers below.

    `wanted` is set only while `grad()` walks the graph: the nodes on a path from its
    inputs to its outputs, the only ones whose gradients that walk needs (needs_grad)."""

    grad_enabled = True
    anomaly = False
    wanted = None


@contextlib.contextmanager
def no_grad():
    """Inside the block, ops record no graph: results are constants."""
    previous, _Mode.grad_enabled = _Mode.grad_enabled, False
    try:
        yield
    finally:
        _Mode.grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    previous, _Mode.grad_enabled = _Mode.grad_enabled, True
    try:
        yield
    finally:
        _Mode.grad_enabled = previous


def is_grad_enabled():
    return _Mode.grad_enabled


def records_graph(*tensors):
    """Whether a gradient computed from these tensors (an op's output gradient and inputs)
    must be recorded as a graph (create_graph, or grad() inside enable_grad): ops with a
    fused or array-level gradient take it only when this is False."""
    return _Mode.grad_enabled and any(t.requires_grad for t in tensors)


def needs_grad(x):
    """Whether an op's `gradient` must compute the gradient of its input `x`: x requires
    grad and, inside `grad()`, lies on a path from the requested inputs (so a gradient
    penalty's walk computes no weight gradients it would drop). Ops with costly input
    gradients (matmul, conv) ask this instead of reading `x.requires_grad`."""
    return x.requires_grad and (_Mode.wanted is None or x in _Mode.wanted)


@contextlib.contextmanager
def detect_anomaly():
    """Raise FloatingPointError at the first op whose forward or gradient holds NaN/Inf.

    The error names the op and its input shapes. Each op's output is copied to the host to
    check it, so this is a debugging mode, not a training default.
    """
    previous, _Mode.anomaly = _Mode.anomaly, True
    try:
        yield
    finally:
        _Mode.anomaly = previous


def _to_numpy(data):
    return data if isinstance(data, numpy.ndarray) else data.numpy()


def _check_finite(data, op, inputs, stage):
    values = _to_numpy(data)
    if numpy.isfinite(values).all():
        return
    kind = "NaN" if numpy.isnan(values).any() else "Inf"
    shapes = ", ".join(str(x.shape) for x in inputs)
    raise FloatingPointError(
        f"detect_anomaly: {type(op).__name__} produced {kind} in its {stage} "
        f"(input shapes: {shapes})")


class Op:
    """An operator: `compute` does the numbers, `gradient` returns Tensors built from ops."""

    def __call__(self, *args):
        raise NotImplementedError()

    def compute(self, *args: Tuple[NDArray]):
        raise NotImplementedError()

    def gradient(self, out_grad: "Value", node: "Value"):
        """Gradients of the inputs; None for an input that needs none."""
        raise NotImplementedError()

    def gradient_as_tuple(self, out_grad: "Value", node: "Value") -> Tuple["Value"]:
        output = self.gradient(out_grad, node)
        if isinstance(output, list):
            output = tuple(output)
        elif not isinstance(output, tuple):
            output = (output,)
        if backend_selection.BACKEND == "np":  # NumPy broadcast the inputs implicitly
            output = tuple(_sum_to_shape(grad, x) for grad, x in zip(output, node.inputs))
        return output


def _sum_to_shape(grad, x):
    """`grad` summed over the axes NumPy broadcast `x` along (NumPy flavour only)."""
    if not isinstance(grad, Tensor) or not isinstance(x, Tensor) or grad.shape == x.shape:
        return grad
    from .ops import reshape, summation
    lead = len(grad.shape) - len(x.shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(x.shape)
                                      if n == 1 and grad.shape[lead + i] != 1)
    return reshape(summation(grad, axes), x.shape) if axes else reshape(grad, x.shape)


class TensorOp(Op):
    """An op whose output is a single Tensor."""

    def __call__(self, *args):
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op):
    """An op whose output is a TensorTuple."""

    def __call__(self, *args):
        return TensorTuple.make_from_op(self, args)


class Value:
    """A node of the computational graph."""

    op: Optional[Op]
    inputs: List["Value"]
    cached_data: NDArray
    requires_grad: bool

    def realize_cached_data(self):
        if self.cached_data is None:
            self.cached_data = backend_selection.as_array(self.op.compute(
                *[x.realize_cached_data() for x in self.inputs]))
        return self.cached_data

    def is_leaf(self):
        return self.op is None

    def __del__(self):
        global TENSOR_COUNTER
        if "op" in self.__dict__:  # a constructor that raised before _init never counted
            TENSOR_COUNTER -= 1

    def _init(self, op, inputs, *, num_outputs=1, cached_data=None, requires_grad=None):
        global TENSOR_COUNTER
        TENSOR_COUNTER += 1
        if requires_grad is None:
            requires_grad = any(x.requires_grad for x in inputs)
        self.op = op
        self.inputs = inputs
        self.num_outputs = num_outputs
        self.cached_data = cached_data
        self.requires_grad = requires_grad

    @classmethod
    def make_const(cls, data, *, requires_grad=False):
        value = cls.__new__(cls)
        value._init(None, [], cached_data=data, requires_grad=requires_grad)
        return value

    @classmethod
    def make_from_op(cls, op: Op, inputs: List["Value"]):
        value = cls.__new__(cls)
        value._init(op, list(inputs),
                    requires_grad=_Mode.grad_enabled and any(x.requires_grad for x in inputs))
        if _Mode.anomaly:
            # NumPy's own warning would only say "invalid value in log"; the check names the op
            with numpy.errstate(all="ignore"):
                data = value.realize_cached_data()
            for array in (data if isinstance(data, tuple) else (data,)):
                _check_finite(array, op, inputs, "forward")
        else:
            data = value.realize_cached_data()
        if not value.requires_grad:
            return cls.make_const(data)
        return value


class TensorTuple(Value):
    """A tuple of Tensors as one graph node (the input of stack, the output of split)."""

    def __len__(self):
        return len(self.realize_cached_data())

    def __getitem__(self, index: int):
        from .ops.tuple import tuple_get_item
        return tuple_get_item(self, index)

    def tuple(self):
        return tuple(self[i] for i in range(len(self)))

    def __repr__(self):
        return "needle.TensorTuple" + str(self.tuple())

    def __str__(self):
        return "needle.TensorTuple" + str(self.tuple())

    def __add__(self, other):
        from .ops.tuple import make_tuple
        if not isinstance(other, TensorTuple) or len(self) != len(other):
            raise ValueError("TensorTuple add: needs a TensorTuple of the same length")
        return make_tuple(*[self[i] + other[i] for i in range(len(self))])

    def detach(self):
        return TensorTuple.make_const(self.realize_cached_data())


def _resolve_dtype(array, dtype):
    """The dtype a new Tensor gets (COURSE_API.md sec. 3.6); an explicit dtype always wins.

    NDArray flavour (the default, hw3/hw4): float32 whatever the input, as the course's
    NDArray is; an NDArray keeps its own dtype (it was made with one on purpose).
    NumPy flavour (hw1/hw2): what `numpy.array(array)` infers, so Python floats, lists of
    floats and float64 arrays are float64 and ints stay ints.
    """
    if dtype is not None:
        return str(numpy.dtype(dtype))
    if backend_selection.BACKEND == "np":
        return None
    if isinstance(array, NDArray):
        return str(array.dtype)
    return "float32"


class Tensor(Value):
    grad: Optional["Tensor"] = None  # set by backward(); None until then, as in PyTorch

    def __init__(self, array, *, device: Optional[Device] = None, dtype=None,
                 requires_grad=True, **kwargs):
        if isinstance(array, Tensor):
            device = array.device if device is None else device
            dtype = array.dtype if dtype is None else dtype
            if device == array.device and dtype == array.dtype:
                cached_data = array.realize_cached_data()
            else:
                cached_data = Tensor._array_from_numpy(array.numpy(), device=device,
                                                       dtype=dtype)
        else:
            if device is None:  # an NDArray stays where it is, as it keeps its dtype
                device = backend_selection.device_of(array) if isinstance(array, NDArray) \
                    else default_device()
            cached_data = Tensor._array_from_numpy(array, device=device,
                                                   dtype=_resolve_dtype(array, dtype))
        self._init(None, [], cached_data=cached_data, requires_grad=requires_grad)

    @staticmethod
    def _array_from_numpy(numpy_array, device, dtype):
        return array_api.array(numpy_array, device=device, dtype=dtype)

    @classmethod
    def make_from_op(cls, op: Op, inputs: List["Value"]):
        if len(inputs) > 1:
            _check_same_device_and_dtype(op, inputs)
        return super().make_from_op(op, inputs)

    @classmethod
    def make_const(cls, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.realize_cached_data()
        return super().make_const(data, requires_grad=requires_grad)

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data: expected a Tensor, got {type(value).__name__}")
        if value.dtype != self.dtype:
            raise TypeError(f"Tensor.data: dtype {value.dtype} does not match the "
                            f"tensor's dtype {self.dtype}")
        self.cached_data = value.realize_cached_data()

    def detach(self):
        """A constant Tensor sharing this Tensor's storage."""
        return Tensor.make_const(self.realize_cached_data())

    @property
    def shape(self):
        return self.realize_cached_data().shape

    @property
    def dtype(self):
        return self.realize_cached_data().dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def device(self):
        return backend_selection.device_of(self.realize_cached_data())

    def to(self, device):
        """A copy on `device` (the only way data moves between devices)."""
        return self if device == self.device else Tensor(self, device=device,
                                                         requires_grad=self.requires_grad)

    def backward(self, out_grad=None, create_graph=True, inputs=None):
        """Store d(self)/d(node) in `.grad` of every node that requires grad.

        `create_graph=True` (the course's default) keeps the gradients differentiable;
        False computes them without recording graph, which is faster for training steps.
        `inputs` (a Tensor or Tensors that require grad, say an optimizer's params), as in torch's
        backward(inputs=...): only the paths that reach them are walked and only they get
        `.grad` (others keep theirs), so a GAN's G step computes no gradient of D's weights.
        """
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            if not inputs:
                raise ValueError("backward: inputs is empty; pass None to fill every .grad")
            for i, x in enumerate(inputs):
                if not isinstance(x, Tensor) or not x.requires_grad:
                    raise ValueError(f"backward: inputs[{i}] is not a Tensor that requires "
                                     f"grad ({type(x).__name__})")
        if out_grad is None:
            out_grad = Tensor(array_api.full(self.shape, 1, dtype=self.dtype,
                                             device=self.device), requires_grad=False)
        context = enable_grad() if create_graph else no_grad()
        with context:
            grads = _reverse_accumulate([self], [out_grad], inputs)
        for node in grads if inputs is None else (x for x in inputs if x in grads):
            node.grad = grads[node]

    def __repr__(self):
        return "needle.Tensor(" + str(self.realize_cached_data()) + ")"

    def __str__(self):
        return str(self.realize_cached_data())

    def numpy(self):
        return _to_numpy(self.realize_cached_data())

    def __len__(self):
        return self.shape[0]

    # ---- operators (COURSE_API.md 3.2: a - b is add(a, negate(b))) ----------------------
    def __add__(self, other):
        from .ops import add, add_scalar
        return add(self, other) if isinstance(other, Tensor) else add_scalar(self, other)

    def __mul__(self, other):
        from .ops import multiply, mul_scalar
        return multiply(self, other) if isinstance(other, Tensor) else mul_scalar(self, other)

    def __pow__(self, other):
        from .ops import power, power_scalar
        return power(self, other) if isinstance(other, Tensor) else power_scalar(self, other)

    def __sub__(self, other):
        from .ops import add, add_scalar, negate
        if isinstance(other, Tensor):
            return add(self, negate(other))
        return add_scalar(self, -other)

    def __rsub__(self, other):
        from .ops import add_scalar, negate
        return add_scalar(negate(self), other)

    def __truediv__(self, other):
        from .ops import divide, divide_scalar
        if isinstance(other, Tensor):
            return divide(self, other)
        return divide_scalar(self, other)

    def __rtruediv__(self, other):
        from .ops import mul_scalar, power_scalar
        return mul_scalar(power_scalar(self, -1), other)

    def __matmul__(self, other):
        from .ops import matmul
        return matmul(self, other)

    def matmul(self, other):
        return self @ other

    def __neg__(self):
        from .ops import negate
        return negate(self)

    def sum(self, axes=None):
        from .ops import summation
        return summation(self, axes)

    def mean(self, axes=None):
        from .ops import mean
        return mean(self, axes)

    def broadcast_to(self, shape):
        from .ops import broadcast_to
        return broadcast_to(self, shape)

    def reshape(self, shape):
        from .ops import reshape
        return reshape(self, shape)

    def transpose(self, axes=None):
        """Swap two axes (the last two by default), as the course defines it."""
        from .ops import transpose
        return transpose(self, axes)

    def exp(self):
        from .ops import exp
        return exp(self)

    def log(self):
        from .ops import log
        return log(self)

    __radd__ = __add__
    __rmul__ = __mul__
    __hash__ = object.__hash__


def _check_same_device_and_dtype(op, inputs):
    tensors = [x for x in inputs if isinstance(x, Tensor)]
    first = tensors[0].realize_cached_data()
    for other in tensors[1:]:
        data = other.realize_cached_data()
        # float32 vs float64 is the silent-upcast bug; bool/int masks may meet floats. The
        # NumPy flavour promotes, as the course's hw1 tests rely on.
        if data.dtype != first.dtype and _is_float(data.dtype) and _is_float(first.dtype) \
                and backend_selection.BACKEND == "nd":
            raise TypeError(f"{type(op).__name__}: inputs have different dtypes: "
                            f"{first.dtype} and {data.dtype}")
        device_a, device_b = backend_selection.device_of(first), \
            backend_selection.device_of(data)
        if device_a != device_b:
            raise ValueError(f"{type(op).__name__}: inputs on different devices: "
                             f"{device_a} and {device_b}; move one with .to(device)")


def _is_float(dtype):
    return numpy.dtype(dtype).kind == "f"


def _reverse_accumulate(outputs, out_grads, inputs=None):
    """Gradients of sum(out_grad * output) for every node that requires grad; with
    `inputs`, only for the nodes on a path from one of them to an output (pruned)."""
    grads_to_sum = {}
    for output, out_grad in zip(outputs, out_grads):
        grads_to_sum.setdefault(output, []).append(out_grad)
    topo_order = find_topo_sort(outputs)
    wanted = None if inputs is None else _on_paths_from(inputs, topo_order)
    grads = {}
    previous, _Mode.wanted = _Mode.wanted, wanted
    try:
        for node in reversed(topo_order):
            if not node.requires_grad or node not in grads_to_sum:
                continue
            grad = sum_node_list(grads_to_sum.pop(node))
            grads[node] = grad
            if node.op is None:
                continue
            for input_node, input_grad in zip(node.inputs, _input_gradients(node, grad)):
                if input_grad is None or not needs_grad(input_node):
                    continue
                if _Mode.anomaly:
                    _check_finite(input_grad.realize_cached_data(), node.op, node.inputs,
                                  "gradient")
                grads_to_sum.setdefault(input_node, []).append(input_grad)
    finally:
        _Mode.wanted = previous
    return grads


def _on_paths_from(inputs, topo_order):
    """The nodes of `topo_order` (inputs before users) that depend on one of `inputs`."""
    wanted = set(inputs)
    for node in topo_order:
        if node not in wanted and any(x in wanted for x in node.inputs):
            wanted.add(node)
    return wanted


def _input_gradients(node, grad):
    """node.op's gradients; in anomaly mode a failure inside them names node.op too."""
    if not _Mode.anomaly:
        return node.op.gradient_as_tuple(grad, node)
    try:
        return node.op.gradient_as_tuple(grad, node)
    except FloatingPointError as error:
        shapes = ", ".join(str(x.shape) for x in node.inputs)
        raise FloatingPointError(f"detect_anomaly: in the gradient of {type(node.op).__name__} "
                                 f"(input shapes: {shapes}): "
                                 f"{str(error).removeprefix('detect_anomaly: ')}") from None


def compute_gradient_of_variables(output_tensor, out_grad):
    """The course's entry point: fill `.grad` of every node reached from `output_tensor`."""
    for node, grad in _reverse_accumulate([output_tensor], [out_grad]).items():
        node.grad = grad


def grad(outputs, inputs, grad_outputs=None, create_graph=False, allow_unused=False):
    """Gradients of `outputs` with respect to `inputs`, without touching `.grad`.

    Like torch.autograd.grad: `grad_outputs` weight each output (ones by default) and
    `create_graph=True` returns differentiable gradients (needed for gradient penalties).
    An input that `outputs` does not depend on raises ValueError unless `allow_unused`,
    which gives None for it.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    seeds = []
    for output, seed in zip(outputs, grad_outputs):
        if seed is None:
            seed = Tensor(array_api.full(output.shape, 1, dtype=output.dtype,
                                         device=output.device), requires_grad=False)
        elif seed.shape != output.shape:
            raise ValueError(f"grad: grad_output of shape {seed.shape} does not match "
                             f"output of shape {output.shape}")
        seeds.append(seed)
    with enable_grad() if create_graph else no_grad():
        grads = _reverse_accumulate(outputs, seeds, inputs)
    result = []
    for i, x in enumerate(inputs):
        if x not in grads and not allow_unused:
            raise ValueError(f"grad: input {i} (shape {x.shape}) is not used to compute "
                             "the outputs, or does not require grad; pass "
                             "allow_unused=True to get None for it")
        result.append(grads.get(x))
    return result[0] if single else tuple(result)


def find_topo_sort(node_list: List[Value]) -> List[Value]:
    """Post-order DFS from the outputs, inputs visited in argument order, each node once."""
    topo_order, visited = [], set()
    for node in node_list:
        _topo_sort_dfs(node, visited, topo_order)
    return topo_order


def _topo_sort_dfs(node, visited, topo_order):
    # Iterative, so deep graphs (long RNN unrolls) do not hit Python's recursion limit.
    if node in visited:
        return
    stack = [(node, iter(node.inputs))]
    visited.add(node)
    while stack:
        current, children = stack[-1]
        for child in children:
            if child not in visited:
                visited.add(child)
                stack.append((child, iter(child.inputs)))
                break
        else:
            stack.pop()
            topo_order.append(current)


def sum_node_list(node_list):
    """Sum a list of Tensors with ops (so the sum is differentiable)."""
    from operator import add
    return functools.reduce(add, node_list)
