"""Recurrent layers: RNNCell, RNN, LSTMCell, LSTM (COURSE_API.md section 6.2).

Layouts follow the course (and PyTorch's default, not batch-first): a sequence is (T, N, in),
hidden states are (num_layers, N, hidden). Weights are stored *transposed* with respect to
PyTorch, so a step is a plain row-vector product,

    h' = act(x W_ih + b_ih + h W_hh + b_hh)        W_ih (in, hidden), W_hh (hidden, hidden),

and a PyTorch weight copies over as `torch_weight.T`. Every weight and bias is drawn from
U(-1/sqrt(hidden), 1/sqrt(hidden)) with `init.rand`, in the order W_ih, W_hh, bias_ih, bias_hh
(layer by layer for the multi-layer modules), so a NumPy seed reproduces the course's values.
Biases are 1-D, as in PyTorch. `forward` reads the weights at call time: replacing
`cell.W_ih` with another Tensor takes effect on the next call.

The loop over time steps is inherent to recurrence; every step works on the whole batch.
"""
import math

from .. import init, ops
from .module import Module, Parameter

__all__ = ["RNNCell", "RNN", "LSTMCell", "LSTM"]

_ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu}


def _uniform(*shape, hidden_size, device, dtype):
    """U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), the course's recurrent-weight init."""
    bound = 1 / math.sqrt(hidden_size)
    return Parameter(init.rand(*shape, low=-bound, high=bound, device=device, dtype=dtype))


def _linear_step(x, weight, bias):
    """x @ weight (+ bias broadcast over the batch); bias is 1-D (out,) or None."""
    y = x @ weight
    if bias is None:
        return y
    return y + ops.broadcast_to(ops.reshape(bias, (1, y.shape[1])), y.shape)


def _check_input(layer, x, ndim, layout, input_size):
    if x.ndim != ndim or x.shape[-1] != input_size:
        raise ValueError(f"{type(layer).__name__}: expected input {layout} with "
                         f"input_size {input_size}, got shape {x.shape}")


def _check_state(layer, state, shape, name):
    if tuple(state.shape) != tuple(shape):
        raise ValueError(f"{type(layer).__name__}: expected {name} of shape {tuple(shape)}, "
                         f"got {tuple(state.shape)}")


class RNNCell(Module):
    """One Elman RNN step: h' = act(x W_ih + b_ih + h W_hh + b_hh), act tanh or relu.

    Shapes: x (N, input_size), h (N, hidden_size) or None (zeros) -> h' (N, hidden_size).
    Parameters, drawn in this order from U(+-1/sqrt(hidden_size)): `W_ih` (input_size,
    hidden_size), `W_hh` (hidden_size, hidden_size), then, if `bias`, `bias_ih` and
    `bias_hh` (hidden_size,); without bias both are None and nothing more is drawn.

        cell = RNNCell(10, 20)
        cell(Tensor(np.ones((3, 10), dtype="float32"))).shape    # (3, 20)
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype="float32"):
        super().__init__()
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', "
                             f"got {nonlinearity!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.nonlinearity = nonlinearity
        kw = dict(hidden_size=hidden_size, device=device, dtype=dtype)
        self.W_ih = _uniform(input_size, hidden_size, **kw)
        self.W_hh = _uniform(hidden_size, hidden_size, **kw)
        self.bias_ih = _uniform(hidden_size, **kw) if bias else None
        self.bias_hh = _uniform(hidden_size, **kw) if bias else None

    def forward(self, X, h=None):
        _check_input(self, X, 2, "(N, input_size)", self.W_ih.shape[0])
        hidden_size = self.W_hh.shape[0]
        if h is None:
            h = init.zeros(X.shape[0], hidden_size, device=X.device, dtype=X.dtype)
        _check_state(self, h, (X.shape[0], hidden_size), "h")
        pre = _linear_step(X, self.W_ih, self.bias_ih) + _linear_step(h, self.W_hh, self.bias_hh)
        return _ACTIVATIONS[self.nonlinearity](pre)


class LSTMCell(Module):
    """One LSTM step, gates in PyTorch's order i, f, g, o:

        [i f g o] = x W_ih + b_ih + h W_hh + b_hh          (4 blocks of hidden_size columns)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')

    Shapes: x (N, input_size), state (h, c) each (N, hidden_size), or None (zeros) ->
    (h', c'). Parameters, drawn in this order from U(+-1/sqrt(hidden_size)): `W_ih`
    (input_size, 4*hidden_size), `W_hh` (hidden_size, 4*hidden_size), then, if `bias`,
    `bias_ih` and `bias_hh` (4*hidden_size,).
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32"):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        kw = dict(hidden_size=hidden_size, device=device, dtype=dtype)
        self.W_ih = _uniform(input_size, 4 * hidden_size, **kw)
        self.W_hh = _uniform(hidden_size, 4 * hidden_size, **kw)
        self.bias_ih = _uniform(4 * hidden_size, **kw) if bias else None
        self.bias_hh = _uniform(4 * hidden_size, **kw) if bias else None

    def forward(self, X, h=None):
        _check_input(self, X, 2, "(N, input_size)", self.W_ih.shape[0])
        batch, hidden_size = X.shape[0], self.W_hh.shape[0]
        if h is None:
            h0 = init.zeros(batch, hidden_size, device=X.device, dtype=X.dtype)
            c0 = init.zeros(batch, hidden_size, device=X.device, dtype=X.dtype)
        else:
            h0, c0 = h
        _check_state(self, h0, (batch, hidden_size), "h")
        _check_state(self, c0, (batch, hidden_size), "c")
        gates = (_linear_step(X, self.W_ih, self.bias_ih)
                 + _linear_step(h0, self.W_hh, self.bias_hh))                  # (N, 4h)
        # (N, 4h) -> (N, 4, h): one split yields the four gate blocks.
        i, f, g, o = ops.split(ops.reshape(gates, (batch, 4, hidden_size)), 1).tuple()
        c = ops.sigmoid(f) * c0 + ops.sigmoid(i) * ops.tanh(g)
        return ops.sigmoid(o) * ops.tanh(c), c


def _layer_states(state, num_layers, batch, hidden_size, like, layer):
    """(num_layers, N, hidden) Tensor or None -> list of per-layer (N, hidden) Tensors."""
    if state is None:
        return [init.zeros(batch, hidden_size, device=like.device, dtype=like.dtype)
                for _ in range(num_layers)]
    _check_state(layer, state, (num_layers, batch, hidden_size), "initial state")
    return list(ops.split(state, 0).tuple())


class RNN(Module):
    """A stack of `num_layers` RNNCells run over a sequence (layer l feeds layer l + 1).

    Shapes: X (T, N, input_size), h0 (num_layers, N, hidden_size) or None (zeros) ->
    (output (T, N, hidden_size): the last layer's h at every step, h_n (num_layers, N,
    hidden_size): every layer's h at the last step). The cells live in the list `rnn_cells`
    (the first maps input_size -> hidden_size, the rest hidden_size -> hidden_size) and are
    built, and their parameters drawn, in layer order. Matches torch.nn.RNN with
    `W_ih = weight_ih_l{k}.T`, `W_hh = weight_hh_l{k}.T`.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, nonlinearity="tanh",
                 device=None, dtype="float32"):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.rnn_cells = [RNNCell(input_size if layer == 0 else hidden_size, hidden_size,
                                  bias=bias, nonlinearity=nonlinearity, device=device,
                                  dtype=dtype)
                          for layer in range(num_layers)]

    def forward(self, X, h0=None):
        _check_input(self, X, 3, "(T, N, input_size)", self.input_size)
        states = _layer_states(h0, self.num_layers, X.shape[1], self.hidden_size, X, self)
        inputs = list(ops.split(X, 0).tuple())
        h_n = []
        for cell, h in zip(self.rnn_cells, states):
            outputs = []
            for x in inputs:
                h = cell(x, h)
                outputs.append(h)
            h_n.append(h)
            inputs = outputs
        return ops.stack(inputs, 0), ops.stack(h_n, 0)


class LSTM(Module):
    """A stack of `num_layers` LSTMCells run over a sequence (layer l feeds layer l + 1).

    Shapes: X (T, N, input_size), h = (h0, c0), each (num_layers, N, hidden_size), or None
    (zeros) -> (output (T, N, hidden_size), (h_n, c_n) each (num_layers, N, hidden_size)).
    The cells live in the list `lstm_cells`, built (and drawn) in layer order. Matches
    torch.nn.LSTM with `W_ih = weight_ih_l{k}.T`, `W_hh = weight_hh_l{k}.T`.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, device=None,
                 dtype="float32"):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.lstm_cells = [LSTMCell(input_size if layer == 0 else hidden_size, hidden_size,
                                    bias=bias, device=device, dtype=dtype)
                           for layer in range(num_layers)]

    def forward(self, X, h=None):
        _check_input(self, X, 3, "(T, N, input_size)", self.input_size)
        h0, c0 = (None, None) if h is None else h
        shape = (self.num_layers, X.shape[1], self.hidden_size)
        hs = _layer_states(h0, *shape, X, self)
        cs = _layer_states(c0, *shape, X, self)
        inputs = list(ops.split(X, 0).tuple())
        h_n, c_n = [], []
        for cell, h_t, c_t in zip(self.lstm_cells, hs, cs):
            outputs = []
            for x in inputs:
                h_t, c_t = cell(x, (h_t, c_t))
                outputs.append(h_t)
            h_n.append(h_t)
            c_n.append(c_t)
            inputs = outputs
        return ops.stack(inputs, 0), (ops.stack(h_n, 0), ops.stack(c_n, 0))
