"""RNNCell, RNN, LSTMCell, LSTM: course init order, torch parity (forward and gradients),
gradchecks in float64."""
import itertools

import numpy as np
import pytest

import needle as ndl
from needle import nn

TOL = dict(atol=1e-5, rtol=1e-5)


def _pairwise(*factors):
    """Six cases in which every pair of values of any two two-valued factors (up to ten)
    occurs: factor j takes its second value in the rows of the j-th 3-subset of {1, ..., 5}.
    Two distinct 3-subsets of a 5-set always intersect and always differ, so any two
    factors show all four value pairs. Row 1 has every factor at its second value."""
    subsets = list(itertools.combinations(range(1, 6), 3))[:len(factors)]
    return [tuple(values[row in subset] for values, subset in zip(factors, subsets))
            for row in range(6)]


# The course's grid (T in {1, 13}, layers {1, 2}, batch {1, 15}, sizes {1, 11} / {1, 12})
# crossed with bias, nonlinearity and an explicit h0, covered pairwise to keep the run short.
SEQUENCE_CASES = _pairwise([1, 13], [1, 2], [1, 15], [1, 11], [1, 12], [False, True],
                           ["tanh", "relu"], [False, True])
SEQUENCE_IDS = [f"T{t}-L{l}-N{n}-in{i}-h{h}-{'bias' if b else 'nobias'}-{a}-"
                f"{'h0' if h0 else 'none'}" for t, l, n, i, h, b, a, h0 in SEQUENCE_CASES]
CELL_CASES = _pairwise([1, 15], [1, 11], [1, 12], [False, True], ["tanh", "relu"],
                       [False, True])


def test_case_tables_cover_every_pair_of_values():
    for cases in (SEQUENCE_CASES, CELL_CASES):
        for a, b in itertools.combinations(range(len(cases[0])), 2):
            assert len({(case[a], case[b]) for case in cases}) == 4


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)    # tiny problems: threads only add contention
    return torch


def _randn(*shape):
    return np.random.randn(*shape).astype(np.float32)


def _tensor(array, device):
    return ndl.Tensor(array, device=device)


def _copy_cell_weights(cell, torch_cell, suffix, device, bias):
    """Put torch's weights into a needle cell as plain Tensors (as the course's tests do)."""
    cell.W_ih = _tensor(getattr(torch_cell, "weight_ih" + suffix).detach().numpy().T, device)
    cell.W_hh = _tensor(getattr(torch_cell, "weight_hh" + suffix).detach().numpy().T, device)
    if bias:
        cell.bias_ih = _tensor(getattr(torch_cell, "bias_ih" + suffix).detach().numpy(), device)
        cell.bias_hh = _tensor(getattr(torch_cell, "bias_hh" + suffix).detach().numpy(), device)


def _assert_cell_grads(cell, torch_cell, suffix, bias):
    np.testing.assert_allclose(cell.W_ih.grad.numpy(),
                               getattr(torch_cell, "weight_ih" + suffix).grad.numpy().T, **TOL)
    np.testing.assert_allclose(cell.W_hh.grad.numpy(),
                               getattr(torch_cell, "weight_hh" + suffix).grad.numpy().T, **TOL)
    if bias:
        np.testing.assert_allclose(cell.bias_ih.grad.numpy(),
                                   getattr(torch_cell, "bias_ih" + suffix).grad.numpy(), **TOL)
        np.testing.assert_allclose(cell.bias_hh.grad.numpy(),
                                   getattr(torch_cell, "bias_hh" + suffix).grad.numpy(), **TOL)


# ---- torch parity -------------------------------------------------------------------------
@pytest.mark.parametrize("batch, input_size, hidden_size, bias, nonlinearity, init_hidden",
                         CELL_CASES)
def test_rnn_cell_matches_torch(device, batch, input_size, hidden_size, bias, nonlinearity,
                                init_hidden):
    torch = _torch()
    torch.manual_seed(0)
    x, h0 = _randn(batch, input_size), _randn(batch, hidden_size)
    reference = torch.nn.RNNCell(input_size, hidden_size, bias=bias, nonlinearity=nonlinearity)
    cell = nn.RNNCell(input_size, hidden_size, bias=bias, nonlinearity=nonlinearity,
                      device=device)
    _copy_cell_weights(cell, reference, "", device, bias)

    expected = reference(torch.tensor(x), torch.tensor(h0) if init_hidden else None)
    h = cell(_tensor(x, device), _tensor(h0, device) if init_hidden else None)
    assert h.shape == (batch, hidden_size) and h.device == device
    np.testing.assert_allclose(h.numpy(), expected.detach().numpy(), **TOL)

    expected.sum().backward()
    h.sum().backward()
    _assert_cell_grads(cell, reference, "", bias)


@pytest.mark.parametrize("batch, input_size, hidden_size, bias, _, init_hidden", CELL_CASES)
def test_lstm_cell_matches_torch(device, batch, input_size, hidden_size, bias, _, init_hidden):
    torch = _torch()
    torch.manual_seed(0)
    x, h0, c0 = _randn(batch, input_size), _randn(batch, hidden_size), _randn(batch, hidden_size)
    reference = torch.nn.LSTMCell(input_size, hidden_size, bias=bias)
    cell = nn.LSTMCell(input_size, hidden_size, bias=bias, device=device)
    _copy_cell_weights(cell, reference, "", device, bias)

    state = (torch.tensor(h0), torch.tensor(c0)) if init_hidden else None
    h_ref, c_ref = reference(torch.tensor(x), state)
    state = (_tensor(h0, device), _tensor(c0, device)) if init_hidden else None
    h, c = cell(_tensor(x, device), state)
    assert h.shape == c.shape == (batch, hidden_size)
    np.testing.assert_allclose(h.numpy(), h_ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(c.numpy(), c_ref.detach().numpy(), **TOL)

    (h_ref.sum() + c_ref.sum()).backward()
    (h.sum() + c.sum()).backward()
    _assert_cell_grads(cell, reference, "", bias)


@pytest.mark.parametrize(
    "seq_len, num_layers, batch, input_size, hidden_size, bias, nonlinearity, init_hidden",
    SEQUENCE_CASES, ids=SEQUENCE_IDS)
def test_rnn_matches_torch(device, seq_len, num_layers, batch, input_size, hidden_size, bias,
                           nonlinearity, init_hidden):
    torch = _torch()
    torch.manual_seed(0)
    x, h0 = _randn(seq_len, batch, input_size), _randn(num_layers, batch, hidden_size)
    reference = torch.nn.RNN(input_size, hidden_size, num_layers=num_layers, bias=bias,
                             nonlinearity=nonlinearity)
    model = nn.RNN(input_size, hidden_size, num_layers, bias=bias, nonlinearity=nonlinearity,
                   device=device)
    for k, cell in enumerate(model.rnn_cells):
        _copy_cell_weights(cell, reference, f"_l{k}", device, bias)

    out_ref, h_ref = reference(torch.tensor(x), torch.tensor(h0) if init_hidden else None)
    output, h_n = model(_tensor(x, device), _tensor(h0, device) if init_hidden else None)
    assert output.shape == (seq_len, batch, hidden_size)
    assert h_n.shape == (num_layers, batch, hidden_size)
    np.testing.assert_allclose(output.numpy(), out_ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(h_n.numpy(), h_ref.detach().numpy(), **TOL)

    out_ref.sum().backward()
    output.sum().backward()
    for k, cell in enumerate(model.rnn_cells):
        _assert_cell_grads(cell, reference, f"_l{k}", bias)


@pytest.mark.parametrize(
    "seq_len, num_layers, batch, input_size, hidden_size, bias, _, init_hidden",
    SEQUENCE_CASES, ids=[i.replace("-tanh", "").replace("-relu", "") for i in SEQUENCE_IDS])
def test_lstm_matches_torch(device, seq_len, num_layers, batch, input_size, hidden_size, bias,
                            _, init_hidden):
    torch = _torch()
    torch.manual_seed(0)
    x = _randn(seq_len, batch, input_size)
    h0, c0 = _randn(num_layers, batch, hidden_size), _randn(num_layers, batch, hidden_size)
    reference = torch.nn.LSTM(input_size, hidden_size, num_layers=num_layers, bias=bias)
    model = nn.LSTM(input_size, hidden_size, num_layers, bias=bias, device=device)
    for k, cell in enumerate(model.lstm_cells):
        _copy_cell_weights(cell, reference, f"_l{k}", device, bias)

    state = (torch.tensor(h0), torch.tensor(c0)) if init_hidden else None
    out_ref, (h_ref, c_ref) = reference(torch.tensor(x), state)
    state = (_tensor(h0, device), _tensor(c0, device)) if init_hidden else None
    output, (h_n, c_n) = model(_tensor(x, device), state)
    assert output.shape == (seq_len, batch, hidden_size)
    assert h_n.shape == c_n.shape == (num_layers, batch, hidden_size)
    np.testing.assert_allclose(output.numpy(), out_ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(h_n.numpy(), h_ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(c_n.numpy(), c_ref.detach().numpy(), **TOL)

    out_ref.sum().backward()
    output.sum().backward()
    for k, cell in enumerate(model.lstm_cells):
        _assert_cell_grads(cell, reference, f"_l{k}", bias)


# ---- initialisation: order, bounds, shapes, RNG consumption ---------------------------------
def _expected_uniform(shapes, hidden_size):
    """The course's init.rand draws in order: float32 rand * (high - low) + low."""
    bound = np.float32(1 / np.sqrt(hidden_size))
    return [np.random.rand(*shape).astype(np.float32) * (bound - -bound) + -bound
            for shape in shapes]


def _cell_shapes(input_size, hidden_size, gates, bias):
    shapes = [(input_size, gates * hidden_size), (hidden_size, gates * hidden_size)]
    return shapes + [(gates * hidden_size,)] * 2 if bias else shapes


@pytest.mark.parametrize("kind, gates", [("rnn", 1), ("lstm", 4)])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_parameters_are_drawn_in_course_order(kind, gates, num_layers, bias):
    input_size, hidden_size = 3, 5
    np.random.seed(7)
    if kind == "rnn":
        model = nn.RNN(input_size, hidden_size, num_layers, bias=bias)
        cells = model.rnn_cells
    else:
        model = nn.LSTM(input_size, hidden_size, num_layers, bias=bias)
        cells = model.lstm_cells
    after_construction = np.random.rand()

    np.random.seed(7)
    shapes = []
    for layer in range(num_layers):
        shapes += _cell_shapes(input_size if layer == 0 else hidden_size, hidden_size, gates,
                               bias)
    expected = _expected_uniform(shapes, hidden_size)
    assert np.random.rand() == after_construction     # nothing else was drawn

    params = model.parameters()
    assert len(cells) == num_layers and all(isinstance(p, nn.Parameter) for p in params)
    assert [tuple(p.shape) for p in params] == shapes
    for param, value in zip(params, expected):
        assert str(param.dtype) == "float32"
        np.testing.assert_allclose(param.numpy(), value, atol=1e-7, rtol=0)
    bound = 1 / np.sqrt(hidden_size)
    assert all(np.abs(p.numpy()).max() <= bound for p in params)
    if not bias:
        assert all(c.bias_ih is None and c.bias_hh is None for c in cells)


@pytest.mark.parametrize("input_size, hidden_size, num_layers, bias", [
    (1, 1, 1, True), (11, 12, 2, True), (11, 12, 3, False), (30, 10, 2, True)])
def test_parameter_counts(input_size, hidden_size, num_layers, bias):
    def per_layer(gates, n_in):
        return gates * hidden_size * (n_in + hidden_size + (2 if bias else 0))

    for module, gates in [(nn.RNN, 1), (nn.LSTM, 4)]:
        model = module(input_size, hidden_size, num_layers, bias=bias)
        count = sum(int(np.prod(p.shape)) for p in model.parameters())
        assert count == per_layer(gates, input_size) + \
            (num_layers - 1) * per_layer(gates, hidden_size)


def test_cells_create_parameters_on_device_and_dtype(device):
    for cell in (nn.RNNCell(2, 3, device=device, dtype="float64"),
                 nn.LSTMCell(2, 3, device=device, dtype="float64")):
        assert all(p.device == device and str(p.dtype) == "float64"
                   for p in cell.parameters())


# ---- behaviour ------------------------------------------------------------------------------
def test_missing_states_are_zeros(device):
    x = ndl.Tensor(_randn(4, 3, 2), device=device)
    rnn, lstm = nn.RNN(2, 5, 2, device=device), nn.LSTM(2, 5, 2, device=device)
    zeros = ndl.init.zeros(2, 3, 5, device=device)
    np.testing.assert_array_equal(rnn(x)[0].numpy(), rnn(x, zeros)[0].numpy())
    out, (h, c) = lstm(x)
    out_zero, (h_zero, c_zero) = lstm(x, (zeros, zeros))
    for a, b in [(out, out_zero), (h, h_zero), (c, c_zero)]:
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    cell = nn.LSTMCell(2, 5, device=device)
    x0 = ndl.Tensor(_randn(3, 2), device=device)
    zero_state = (ndl.init.zeros(3, 5, device=device), ndl.init.zeros(3, 5, device=device))
    np.testing.assert_array_equal(cell(x0)[1].numpy(), cell(x0, zero_state)[1].numpy())


def test_rnn_last_output_step_is_last_layer_state():
    model = nn.RNN(3, 4, num_layers=2)
    output, h_n = model(ndl.Tensor(_randn(6, 2, 3)))
    np.testing.assert_array_equal(output.numpy()[-1], h_n.numpy()[-1])


def test_every_parameter_of_a_two_layer_lstm_gets_a_gradient():
    model = nn.LSTM(5, 6, num_layers=2)
    output, _ = model(ndl.Tensor(_randn(7, 3, 5)))
    output.sum().backward()
    params = model.parameters()
    assert len(params) == 8
    for param in params:
        assert param.grad is not None and param.grad.shape == param.shape
        assert np.abs(param.grad.numpy()).sum() > 0


def test_every_parameter_of_a_two_layer_rnn_gets_a_gradient():
    model = nn.RNN(5, 6, num_layers=2)
    output, h_n = model(ndl.Tensor(_randn(7, 3, 5)))
    (output.sum() + h_n.sum()).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match="RNNCell: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"RNN: expected input \(T, N, input_size\) with "
                                         r"input_size 2, got shape \(4, 3\)"):
        nn.RNN(2, 3)(ndl.Tensor(_randn(4, 3)))
    with pytest.raises(ValueError, match=r"LSTM: expected initial state of shape \(1, 3, 5\)"):
        nn.LSTM(2, 5)(ndl.Tensor(_randn(4, 3, 2)),
                      (ndl.init.zeros(2, 3, 5), ndl.init.zeros(2, 3, 5)))
    with pytest.raises(ValueError, match=r"LSTMCell: expected input \(N, input_size\)"):
        nn.LSTMCell(2, 5)(ndl.Tensor(_randn(3, 4)))


# ---- gradchecks (float64) -------------------------------------------------------------------
def _float64(*shape):
    return ndl.Tensor(np.random.randn(*shape), dtype="float64")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_step_gradcheck(nonlinearity):
    np.random.seed(0)
    cell = nn.RNNCell(3, 4, nonlinearity=nonlinearity, dtype="float64")

    def step(x, h, W_ih, W_hh, bias_ih, bias_hh):
        cell.W_ih, cell.W_hh, cell.bias_ih, cell.bias_hh = W_ih, W_hh, bias_ih, bias_hh
        return cell(x, h)

    ndl.gradcheck(step, _float64(2, 3), _float64(2, 4), _float64(3, 4), _float64(4, 4),
                  _float64(4), _float64(4))


def test_lstm_cell_step_gradcheck():
    np.random.seed(1)
    cell = nn.LSTMCell(3, 4, dtype="float64")

    def step(x, h, c, W_ih, W_hh, bias_ih, bias_hh):
        cell.W_ih, cell.W_hh, cell.bias_ih, cell.bias_hh = W_ih, W_hh, bias_ih, bias_hh
        return cell(x, (h, c))

    ndl.gradcheck(step, _float64(2, 3), _float64(2, 4), _float64(2, 4), _float64(3, 16),
                  _float64(4, 16), _float64(16), _float64(16))
