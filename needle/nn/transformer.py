"""Attention and the decoder-style Transformer of hw4_extra (COURSE_API.md section 12).

Shape names: B batch, T (Tq, Tk) sequence length, H heads, D per-head width, F features.
The course's golden outputs are produced in *training* mode with dropout 0.0 and 0.1, so
what matters besides the math is the order of random draws:

- construction (NumPy's global RNG): a Transformer draws its positional Embedding first, then
  its layers in order; a TransformerLayer draws its AttentionLayer (q, k, v, then out
  projection weights; LayerNorms and the attention draw nothing), then Linear1 (weight, bias),
  then Linear2 (weight, bias);
- forward: every Dropout call in training mode draws one mask of its input's shape (even for
  p = 0, as the course's Dropout does), in evaluation order: the attention probabilities,
  then, per TransformerLayer, the attention branch, the hidden ReLU activations and the
  feed-forward branch.
"""
import math

import numpy as np

from .. import init, ops
from ..autograd import Tensor
from .basic import Dropout, Embedding, Linear, ReLU, Sequential
from .module import Module
from .norm import LayerNorm1d

__all__ = ["MultiHeadAttention", "AttentionLayer", "TransformerLayer", "Transformer"]


class MultiHeadAttention(Module):
    """Scaled dot-product attention over heads that are already split:

        probs = dropout(softmax(q k^T / sqrt(D) + mask))      result = probs v

    Shapes: q (B, H, Tq, D), k and v (B, H, Tk, D) -> (result (B, H, Tq, D), probs
    (B, H, Tq, Tk)). `probs` is returned *after* dropout, as the course's tests expect. With
    `causal`, query i may not attend to keys j > i + Tk - Tq (the queries are the last Tq of
    the Tk positions). No parameters.
    """

    def __init__(self, *, dropout=0.0, causal=False, device=None, dtype="float32"):
        super().__init__()
        self.device, self.dtype = device, dtype
        self.causal = causal
        self.dropout = Dropout(dropout)

    def create_causal_mask(self, i, j, device, dtype="float32"):
        """(1, 1, i, j) additive mask: -float32 max above diagonal j - i, 0 elsewhere.

        The course's helper returns an NDArray; this returns a constant Tensor, which
        `Tensor(...)` and `broadcast_to` accept alike. The mask is the largest finite float32
        (not -inf), so masked scores stay finite and their softmax weight underflows to 0.
        """
        above = np.triu(np.ones((1, 1, i, j), dtype=np.float32), j - i + 1)
        mask = -np.finfo(np.float32).max * above
        return Tensor(mask, device=device, dtype=dtype, requires_grad=False)

    def matmul(self, a, b_transpose):
        """a @ b_transpose^T over the last two axes, batch axes broadcast: (..., m, n) and
        (..., p, n) -> (..., m, p). The course's helper (a broadcast multiply and sum) as one
        batched matmul."""
        return ops.matmul(a, ops.transpose(b_transpose))

    def softmax(self, logit):
        """Softmax over the last axis, max-shifted: exp(logit - logsumexp(logit))."""
        axis = logit.ndim - 1
        total = ops.reshape(ops.logsumexp(logit, axis), logit.shape[:-1] + (1,))
        return ops.exp(logit - ops.broadcast_to(total, logit.shape))

    def forward(self, q, k, v):
        if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape or k.shape[:2] != q.shape[:2] \
                or k.shape[3] != q.shape[3]:
            raise ValueError(f"MultiHeadAttention: expected q (B, H, Tq, D) and k, v "
                             f"(B, H, Tk, D), got {q.shape}, {k.shape}, {v.shape}")
        queries_len, q_dim = q.shape[2:]
        keys_len = k.shape[2]
        scores = self.matmul(q, k) / math.sqrt(q_dim)                  # (B, H, Tq, Tk)
        if self.causal:
            mask = self.create_causal_mask(queries_len, keys_len, q.device, q.dtype)
            scores = scores + ops.broadcast_to(mask, scores.shape)
        probs = self.dropout(self.softmax(scores))
        return probs @ v, probs                                       # (B, H, Tq, D)


class AttentionLayer(Module):
    """Pre-norm multi-head attention with bias-free projections:

        q, k, v = LayerNorm(q) W_q, LayerNorm(k) W_k, LayerNorm(v) W_v     (split into heads)
        result = merge_heads(MultiHeadAttention(q, k, v)) W_out

    Shapes: q (B, Tq, q_features), k (B, Tk, k_features), v (B, Tk, v_features); k and v
    default to q -> (B, Tq, out_features). Features default to q_features. Built in this order:
    `prenorm_q`, `prenorm_k`, `prenorm_v`, `q_projection`, `k_projection`, `v_projection`
    (each (features, num_head * dim_head)), `attn`, `out_projection`.
    """

    def __init__(self, q_features, num_head, dim_head, *, k_features=None, v_features=None,
                 out_features=None, dropout=0.0, causal=True, device=None, dtype="float32"):
        super().__init__()
        self.device, self.dtype = device, dtype
        k_features = q_features if k_features is None else k_features
        v_features = q_features if v_features is None else v_features
        out_features = q_features if out_features is None else out_features
        self.q_features, self.k_features = q_features, k_features
        self.v_features, self.out_features = v_features, out_features
        self.num_head, self.dim_head = num_head, dim_head
        kw = dict(device=device, dtype=dtype)
        self.prenorm_q = LayerNorm1d(q_features, **kw)
        self.prenorm_k = LayerNorm1d(k_features, **kw)
        self.prenorm_v = LayerNorm1d(v_features, **kw)
        inner_dim = num_head * dim_head
        self.q_projection = Linear(q_features, inner_dim, bias=False, **kw)
        self.k_projection = Linear(k_features, inner_dim, bias=False, **kw)
        self.v_projection = Linear(v_features, inner_dim, bias=False, **kw)
        self.attn = MultiHeadAttention(dropout=dropout, causal=causal, **kw)
        self.out_projection = Linear(inner_dim, out_features, bias=False, **kw)

    def _split_heads(self, x):
        """(B, T, H * D) -> (B, H, T, D)."""
        batch, length, _ = x.shape
        return ops.transpose(ops.reshape(x, (batch, length, self.num_head, self.dim_head)),
                             (1, 2))

    def forward(self, q, k=None, v=None):
        k = q if k is None else k
        v = q if v is None else v
        batch, queries_len, _ = q.shape
        q = self._split_heads(self.q_projection(self.prenorm_q(q)))
        k = self._split_heads(self.k_projection(self.prenorm_k(k)))
        v = self._split_heads(self.v_projection(self.prenorm_v(v)))
        result, _ = self.attn(q, k, v)                                 # (B, H, Tq, D)
        result = ops.reshape(ops.transpose(result, (1, 2)),
                             (batch, queries_len, self.num_head * self.dim_head))
        return self.out_projection(result)                             # (B, Tq, out)


class TransformerLayer(Module):
    """A pre-norm Transformer block (dropout p everywhere):

        x = x + Dropout(AttentionLayer(x))
        x = x + Dropout(Linear2(Dropout(ReLU(Linear1(LayerNorm1d(x))))))

    Shapes: x (B, T, q_features) -> (B, T, q_features). Linear1 maps q_features ->
    hidden_size and Linear2 back, both with biases. Built (and drawn) in the order `attn`,
    `dropout`, `norm`, `linear1`, `linear2`; one Dropout module serves all three sites.
    """

    def __init__(self, q_features, num_head, dim_head, hidden_size, *, dropout=0.0,
                 causal=True, device=None, dtype="float32"):
        super().__init__()
        self.device, self.dtype = device, dtype
        kw = dict(device=device, dtype=dtype)
        self.attn = AttentionLayer(q_features, num_head, dim_head, dropout=dropout,
                                   causal=causal, **kw)
        self.dropout = Dropout(dropout)
        self.norm = LayerNorm1d(q_features, **kw)
        self.linear1 = Linear(q_features, hidden_size, **kw)
        self.relu = ReLU()
        self.linear2 = Linear(hidden_size, q_features, **kw)

    def forward(self, x):
        if x.ndim != 3:
            raise ValueError(f"TransformerLayer: expected x (B, T, features), got {x.shape}")
        x = x + self.dropout(self.attn(x))
        hidden = self.dropout(self.relu(self.linear1(self.norm(x))))
        return x + self.dropout(self.linear2(hidden))


class Transformer(Module):
    """Learned positional embeddings followed by `num_layers` TransformerLayers.

    Shapes: x (T, B, embedding_size), or (B, T, embedding_size) with `batch_first` ->
    (output of the same layout, zeros_like(output)); the second value stands in for an RNN's
    hidden state so a language model can treat every sequence model alike (`h` is ignored).
    The position of step t is the float id t, looked up in `positional_embedding`
    (Embedding(sequence_len, embedding_size), drawn first), so T <= sequence_len. The layers
    live in `layers` (a Sequential) with hidden_size the feed-forward width.
    """

    def __init__(self, embedding_size, hidden_size, num_layers, *, num_head=8, dim_head=32,
                 dropout=0.0, causal=True, device=None, dtype="float32", batch_first=False,
                 sequence_len=2048):
        super().__init__()
        self.device, self.dtype = device, dtype
        self.batch_first = batch_first
        self.embedding_size, self.sequence_len = embedding_size, sequence_len
        kw = dict(device=device, dtype=dtype)
        self.positional_embedding = Embedding(sequence_len, embedding_size, **kw)
        self.layers = Sequential(*[
            TransformerLayer(embedding_size, num_head, dim_head, hidden_size, dropout=dropout,
                             causal=causal, **kw)
            for _ in range(num_layers)])

    def forward(self, x, h=None):
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))                               # (B, T, F)
        batch, length, _ = x.shape
        if length > self.sequence_len:
            raise ValueError(f"Transformer: sequence of length {length} exceeds "
                             f"sequence_len {self.sequence_len}")
        steps = np.broadcast_to(np.arange(length, dtype=np.float32)[None, :], (batch, length))
        positions = Tensor(np.ascontiguousarray(steps), device=x.device, requires_grad=False)
        x = x + self.positional_embedding(positions)                   # (B, T, F)
        x = self.layers(x)
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))
        return x, init.zeros_like(x)
