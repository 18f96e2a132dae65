"""MultiHeadAttention, AttentionLayer, TransformerLayer, Transformer (COURSE_API.md section 12).

MultiHeadAttention is checked against a NumPy reference; the layers against a float64 torch
reference written here from the formulas (torch.nn.functional.layer_norm, softmax), which
also supplies the gradients. Dropout masks are reproduced by hand: the reference draws
np.random.rand(*shape) <= 1 - p at the same sites in the same order as the layers must.
"""
import math

import numpy as np
import pytest

import needle as ndl
from needle import nn

TOL = dict(atol=1e-5, rtol=1e-5)


def _randn(*shape):
    return np.random.randn(*shape).astype(np.float32)


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)    # tiny problems: threads only add contention
    return torch


def _keep_mask(shape, p):
    """The course's Dropout mask: randb(p=1 - p) = float32 rand <= 1 - p (NumPy global RNG)."""
    return np.random.rand(*shape).astype(np.float32) <= 1 - p


# ---- MultiHeadAttention vs NumPy ------------------------------------------------------------
def _numpy_attention(q, k, v, causal, keep=None, p=0.0):
    """softmax(q k^T / sqrt(D) + mask) v in float64; `keep` is a dropout keep-mask."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    queries_len, keys_len = q.shape[2], k.shape[2]
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:    # query i sits at position i + Tk - Tq and sees keys up to there
        rows, cols = np.indices((queries_len, keys_len))
        scores = np.where(cols > rows + keys_len - queries_len, -np.inf, scores)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if keep is not None:
        probs = probs * keep / (1 - p)
    return probs @ v, probs


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("batch, heads, queries_len, keys_len, dim", [
    (1, 1, 1, 1, 1), (2, 3, 5, 5, 4), (3, 2, 4, 7, 6)])
def test_multi_head_attention_matches_numpy(device, batch, heads, queries_len, keys_len, dim,
                                            causal):
    np.random.seed(19943)
    q = _randn(batch, heads, queries_len, dim)
    k, v = _randn(batch, heads, keys_len, dim), _randn(batch, heads, keys_len, dim)
    layer = nn.MultiHeadAttention(dropout=0.0, causal=causal, device=device)
    result, probs = layer(*(ndl.Tensor(a, device=device) for a in (q, k, v)))
    expected, expected_probs = _numpy_attention(q, k, v, causal)
    assert result.shape == (batch, heads, queries_len, dim) and result.device == device
    assert probs.shape == (batch, heads, queries_len, keys_len)
    np.testing.assert_allclose(probs.numpy(), expected_probs, **TOL)
    np.testing.assert_allclose(result.numpy(), expected, **TOL)
    if causal:
        assert not np.any(probs.numpy()[..., 0, keys_len - queries_len + 1:])


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_dropout_masks_probabilities(device, causal):
    """Training mode, p = 0.1: one mask of the probabilities' shape, drawn right after the
    softmax; `probs` is returned after dropout."""
    p, shape = 0.1, (2, 3, 6, 4)
    np.random.seed(19943)
    q, k, v = _randn(*shape), _randn(*shape), _randn(*shape)
    layer = nn.MultiHeadAttention(dropout=p, causal=causal, device=device)
    np.random.seed(5)
    result, probs = layer(*(ndl.Tensor(a, device=device) for a in (q, k, v)))
    after_forward = np.random.rand()

    np.random.seed(5)
    keep = _keep_mask((2, 3, 6, 6), p)
    assert np.random.rand() == after_forward      # exactly one mask was drawn
    assert 0 < keep.sum() < keep.size
    expected, expected_probs = _numpy_attention(q, k, v, causal, keep, p)
    np.testing.assert_allclose(probs.numpy(), expected_probs, **TOL)
    np.testing.assert_allclose(result.numpy(), expected, **TOL)


def test_multi_head_attention_eval_mode_draws_nothing():
    shape = (1, 2, 3, 4)
    q, k, v = (ndl.Tensor(_randn(*shape)) for _ in range(3))
    layer = nn.MultiHeadAttention(dropout=0.5, causal=True).eval()
    state = np.random.get_state()[1].copy()
    result, probs = layer(q, k, v)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    np.testing.assert_allclose(probs.numpy(), _numpy_attention(q.numpy(), k.numpy(), v.numpy(),
                                                               True)[1], **TOL)


@pytest.mark.nd_only
def test_causal_mask_helper():
    mask = nn.MultiHeadAttention().create_causal_mask(2, 4, ndl.cpu_numpy()).numpy()
    big = -np.finfo(np.float32).max
    np.testing.assert_array_equal(mask, [[[[0, 0, 0, big], [0, 0, 0, 0]]]])


def test_multi_head_attention_gradcheck():
    np.random.seed(0)
    layer = nn.MultiHeadAttention(causal=True, dtype="float64").eval()
    q, k, v = (ndl.Tensor(np.random.randn(2, 2, 3, 4), dtype="float64") for _ in range(3))
    ndl.gradcheck(lambda q, k, v: layer(q, k, v)[0], q, k, v)


def test_multi_head_attention_names_bad_shapes():
    with pytest.raises(ValueError, match=r"MultiHeadAttention: expected q \(B, H, Tq, D\)"):
        nn.MultiHeadAttention()(ndl.Tensor(_randn(2, 3, 4)), ndl.Tensor(_randn(2, 3, 4)),
                                ndl.Tensor(_randn(2, 3, 4)))


# ---- a float64 torch reference for the layers ------------------------------------------------
class _Reference:
    """The layers' formulas in torch, on float64 copies of a needle module's parameters.

    `params` maps needle's dotted parameter names to leaf torch tensors, so gradients can be
    compared name by name. `drop` draws a dropout mask from NumPy at each site, in order.
    """

    def __init__(self, torch, module, p=0.0, training=True):
        self.torch, self.p, self.training = torch, p, training
        self.params = {name: torch.tensor(param.numpy(), dtype=torch.float64,
                                          requires_grad=True)
                       for name, param in module.named_parameters()}

    def drop(self, x):
        if not self.training:
            return x
        keep = self.torch.from_numpy(_keep_mask(tuple(x.shape), self.p))
        return x * keep / (1 - self.p)

    def layer_norm(self, x, name):
        width = x.shape[-1]
        return self.torch.nn.functional.layer_norm(
            x, (width,), self.params[name + ".weight"], self.params[name + ".bias"], eps=1e-5)

    def linear(self, x, name):
        y = x @ self.params[name + ".weight"]
        bias = self.params.get(name + ".bias")
        return y if bias is None else y + bias.reshape(-1)

    def attention_layer(self, q, k, v, prefix, num_head, dim_head, causal):
        torch = self.torch

        def heads(x):                                   # (B, T, H*D) -> (B, H, T, D)
            return x.reshape(x.shape[0], x.shape[1], num_head, dim_head).permute(0, 2, 1, 3)

        Q = heads(self.linear(self.layer_norm(q, prefix + "prenorm_q"), prefix + "q_projection"))
        K = heads(self.linear(self.layer_norm(k, prefix + "prenorm_k"), prefix + "k_projection"))
        V = heads(self.linear(self.layer_norm(v, prefix + "prenorm_v"), prefix + "v_projection"))
        scores = Q @ K.transpose(-1, -2) / math.sqrt(dim_head)
        if causal:
            queries_len, keys_len = scores.shape[-2:]
            hidden = torch.ones(queries_len, keys_len, dtype=torch.bool).triu(
                keys_len - queries_len + 1)
            scores = scores.masked_fill(hidden, float("-inf"))
        probs = self.drop(torch.softmax(scores, dim=-1))
        merged = (probs @ V).permute(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], -1)
        return self.linear(merged, prefix + "out_projection")

    def transformer_layer(self, x, prefix, num_head, dim_head, causal):
        attn = self.attention_layer(x, x, x, prefix + "attn.", num_head, dim_head, causal)
        x = x + self.drop(attn)
        hidden = self.drop(self.torch.relu(self.linear(self.layer_norm(x, prefix + "norm"),
                                                       prefix + "linear1")))
        return x + self.drop(self.linear(hidden, prefix + "linear2"))

    def transformer(self, x, num_layers, num_head, dim_head, causal, batch_first):
        if not batch_first:
            x = x.transpose(0, 1)
        x = x + self.params["positional_embedding.weight"][:x.shape[1]]
        for layer in range(num_layers):
            x = self.transformer_layer(x, f"layers.modules.{layer}.", num_head, dim_head,
                                       causal)
        return x if batch_first else x.transpose(0, 1)


def _compare(torch, reference, expected, output, module, inputs=()):
    """Forward values, then every parameter's (and input's) gradient after .sum().backward().

    Gradients sum many float32 terms, so an element near zero can carry the rounding error of
    the largest ones: the absolute tolerance is 1e-5 times the largest gradient entry of the
    whole model (a gradient that is zero analytically, like a key bias under softmax, is
    float32 noise of the terms that cancel; cuBLAS and OpenBLAS round it differently).
    """
    np.testing.assert_allclose(output.numpy(), expected.detach().numpy(), **TOL)
    expected.sum().backward()
    output.sum().backward()
    scale = max([1.0] + [float(np.abs(p.grad.numpy()).max())
                         for p in reference.params.values()])

    def assert_grad_close(actual, desired, name):
        np.testing.assert_allclose(actual, desired, atol=1e-5 * scale, rtol=1e-5, err_msg=name)

    for name, param in module.named_parameters():
        assert param.grad is not None, name
        assert_grad_close(param.grad.numpy(), reference.params[name].grad.numpy(), name)
    for tensor, torch_tensor in inputs:
        assert_grad_close(tensor.grad.numpy(), torch_tensor.grad.numpy(), "input")


def _leaf(torch, array):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


# ---- AttentionLayer ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch, queries_len, num_head, dim_head, causal, dropout", [
    (4, 5, 8, 32, True, 0.0), (1, 1, 2, 3, False, 0.0), (2, 6, 3, 4, True, 0.1),
    (3, 4, 2, 5, False, 0.1)])
def test_attention_layer_self_attention(device, batch, queries_len, num_head, dim_head, causal,
                                        dropout):
    torch = _torch()
    np.random.seed(19943)
    x = _randn(batch, queries_len, 27)
    layer = nn.AttentionLayer(27, num_head, dim_head, dropout=dropout, causal=causal,
                              device=device)
    reference = _Reference(torch, layer, dropout)
    x_ref = _leaf(torch, x)
    np.random.seed(3)
    expected = reference.attention_layer(x_ref, x_ref, x_ref, "", num_head, dim_head, causal)
    np.random.seed(3)
    x_needle = ndl.Tensor(x, device=device)
    output = layer(x_needle)
    assert output.shape == (batch, queries_len, 27) and output.device == device
    _compare(torch, reference, expected, output, layer, [(x_needle, x_ref)])


def test_attention_layer_cross_attention_with_own_widths(device):
    torch = _torch()
    np.random.seed(0)
    q, k, v = _randn(2, 3, 6), _randn(2, 5, 7), _randn(2, 5, 4)
    layer = nn.AttentionLayer(6, 2, 3, k_features=7, v_features=4, out_features=9, causal=True,
                              device=device)
    reference = _Reference(torch, layer)
    leaves = [_leaf(torch, a) for a in (q, k, v)]
    tensors = [ndl.Tensor(a, device=device) for a in (q, k, v)]
    np.random.seed(1)
    expected = reference.attention_layer(*leaves, "", 2, 3, True)
    np.random.seed(1)
    output = layer(*tensors)
    assert output.shape == (2, 3, 9)
    _compare(torch, reference, expected, output, layer, list(zip(tensors, leaves)))


def test_attention_layer_builds_and_draws_in_course_order():
    np.random.seed(11)
    layer = nn.AttentionLayer(6, 2, 3, k_features=4, v_features=5, out_features=7)
    after_construction = np.random.rand()
    np.random.seed(11)
    expected = [("q_projection", 6, 6), ("k_projection", 4, 6), ("v_projection", 5, 6),
                ("out_projection", 6, 7)]
    draws = {name: np.random.rand(fan_in, fan_out).astype(np.float32)
             * np.float32(2 * np.sqrt(6 / fan_in)) - np.float32(np.sqrt(6 / fan_in))
             for name, fan_in, fan_out in expected}
    assert np.random.rand() == after_construction
    assert [name for name, _ in layer.named_parameters()] == [
        "prenorm_q.weight", "prenorm_q.bias", "prenorm_k.weight", "prenorm_k.bias",
        "prenorm_v.weight", "prenorm_v.bias", "q_projection.weight", "k_projection.weight",
        "v_projection.weight", "out_projection.weight"]
    for name, value in draws.items():
        np.testing.assert_allclose(getattr(layer, name).weight.numpy(), value, atol=1e-6)
        assert getattr(layer, name).bias is None
    assert [layer.prenorm_q.dim, layer.prenorm_k.dim, layer.prenorm_v.dim] == [6, 4, 5]


# ---- TransformerLayer ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch, seq_len, num_head, dim_head, hidden, causal, dropout", [
    (4, 5, 8, 32, 64, True, 0.0), (1, 1, 2, 3, 5, False, 0.0), (2, 6, 3, 4, 7, True, 0.1)])
def test_transformer_layer(device, batch, seq_len, num_head, dim_head, hidden, causal, dropout):
    torch = _torch()
    np.random.seed(19943)
    x = _randn(batch, seq_len, 27)
    layer = nn.TransformerLayer(27, num_head, dim_head, hidden, dropout=dropout, causal=causal,
                                device=device)
    reference = _Reference(torch, layer, dropout)
    x_ref = _leaf(torch, x)
    np.random.seed(8)
    expected = reference.transformer_layer(x_ref, "", num_head, dim_head, causal)
    after_reference = np.random.rand()
    np.random.seed(8)
    x_needle = ndl.Tensor(x, device=device)
    output = layer(x_needle)
    assert np.random.rand() == after_reference       # the same draws, and no others
    assert output.shape == (batch, seq_len, 27)
    _compare(torch, reference, expected, output, layer, [(x_needle, x_ref)])


def test_transformer_layer_eval_mode_is_deterministic():
    layer = nn.TransformerLayer(6, 2, 3, 8, dropout=0.5).eval()
    x = ndl.Tensor(_randn(2, 4, 6))
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())


# ---- Transformer --------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers, causal, dropout", [(2, True, 0.0), (1, False, 0.1)])
def test_transformer(device, batch_first, num_layers, causal, dropout):
    torch = _torch()
    batch, seq_len, width, num_head, dim_head, hidden = 3, 5, 12, 2, 4, 16
    np.random.seed(19943)
    shape = (batch, seq_len, width) if batch_first else (seq_len, batch, width)
    x = _randn(*shape)
    model = nn.Transformer(width, hidden, num_layers, num_head=num_head, dim_head=dim_head,
                           dropout=dropout, causal=causal, device=device,
                           batch_first=batch_first, sequence_len=9)
    reference = _Reference(torch, model, dropout)
    x_ref = _leaf(torch, x)
    np.random.seed(4)
    expected = reference.transformer(x_ref, num_layers, num_head, dim_head, causal, batch_first)
    np.random.seed(4)
    x_needle = ndl.Tensor(x, device=device)
    output, state = model(x_needle)
    assert output.shape == shape and state.shape == shape
    assert not np.any(state.numpy()) and not state.requires_grad
    _compare(torch, reference, expected, output, model, [(x_needle, x_ref)])
    grad = model.positional_embedding.weight.grad.numpy()
    assert not np.any(grad[seq_len:]) and np.all(np.any(grad[:seq_len], axis=1))


def test_transformer_builds_and_draws_in_course_order():
    width, hidden, num_layers, num_head, dim_head, sequence_len = 6, 5, 2, 2, 3, 10
    np.random.seed(42)
    model = nn.Transformer(width, hidden, num_layers, num_head=num_head, dim_head=dim_head,
                           sequence_len=sequence_len)
    after_construction = np.random.rand()

    def kaiming(fan_in, *shape):
        bound = np.float32(np.sqrt(6 / fan_in))
        return np.random.rand(*shape).astype(np.float32) * (bound - -bound) + -bound

    np.random.seed(42)
    inner = num_head * dim_head
    expected = {"positional_embedding.weight": np.random.randn(sequence_len, width)}
    for layer in range(num_layers):
        prefix = f"layers.modules.{layer}."
        for name in ("q_projection", "k_projection", "v_projection"):
            expected[prefix + f"attn.{name}.weight"] = kaiming(width, width, inner)
        expected[prefix + "attn.out_projection.weight"] = kaiming(inner, inner, width)
        expected[prefix + "linear1.weight"] = kaiming(width, width, hidden)
        expected[prefix + "linear1.bias"] = kaiming(hidden, hidden, 1).reshape(1, hidden)
        expected[prefix + "linear2.weight"] = kaiming(hidden, hidden, width)
        expected[prefix + "linear2.bias"] = kaiming(width, width, 1).reshape(1, width)
    assert np.random.rand() == after_construction
    params = dict(model.named_parameters())
    for name, value in expected.items():
        np.testing.assert_allclose(params[name].numpy(), value, atol=1e-6, err_msg=name)
    assert set(params) - set(expected) == {
        f"layers.modules.{layer}.{norm}.{part}" for layer in range(num_layers)
        for norm in ("attn.prenorm_q", "attn.prenorm_k", "attn.prenorm_v", "norm")
        for part in ("weight", "bias")}


@pytest.mark.parametrize("width, hidden, num_layers, num_head, dim_head, sequence_len", [
    (27, 64, 1, 8, 32, 2048), (12, 16, 3, 2, 4, 9)])
def test_parameter_counts(width, hidden, num_layers, num_head, dim_head, sequence_len):
    inner = num_head * dim_head
    attention = 3 * 2 * width + 3 * width * inner + inner * width
    block = attention + 2 * width + (width * hidden + hidden) + (hidden * width + width)

    def count(module):
        return sum(int(np.prod(p.shape)) for p in module.parameters())

    assert count(nn.MultiHeadAttention()) == 0
    assert count(nn.AttentionLayer(width, num_head, dim_head)) == attention
    assert count(nn.TransformerLayer(width, num_head, dim_head, hidden)) == block
    model = nn.Transformer(width, hidden, num_layers, num_head=num_head, dim_head=dim_head,
                           sequence_len=sequence_len)
    assert count(model) == sequence_len * width + num_layers * block


def test_transformer_rejects_sequences_longer_than_its_embedding():
    model = nn.Transformer(4, 4, 1, num_head=1, dim_head=2, sequence_len=3)
    with pytest.raises(ValueError, match="Transformer: sequence of length 4 exceeds "
                                         "sequence_len 3"):
        model(ndl.Tensor(_randn(4, 2, 4)))
