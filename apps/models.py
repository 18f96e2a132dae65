"""hw4 models: ResNet9 for CIFAR-10 and a word-level LanguageModel (COURSE_API.md section 9).

    from apps.models import ResNet9, LanguageModel   # repository root on sys.path
    sys.path.append("./apps"); from models import *  # the flat way

Parameters are drawn from NumPy's global RNG in construction order (layer by layer, as
listed below), which is what a seeded golden value depends on.
"""
import needle as ndl  # noqa: F401  (the course's module namespace has it)
import needle.nn as nn

__all__ = ["ConvBN", "ResNet9", "LanguageModel"]


class ConvBN(nn.Module):
    """Conv(a, b, k, stride=s) -> BatchNorm2d(b) -> ReLU, NCHW: (N, a, H, W) -> (N, b, H', W')
    with H' = (H + 2 (k // 2) - k) // s + 1."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, device=None,
                 dtype="float32"):
        super().__init__()
        self.conv = nn.Conv(in_channels, out_channels, kernel_size, stride=stride,
                            device=device, dtype=dtype)
        self.bn = nn.BatchNorm2d(out_channels, device=device, dtype=dtype)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class ResNet9(nn.Module):
    """The course's ResNet9: (N, 3, 32, 32) images -> (N, 10) logits; 431946 parameters.

    ConvBN(3,16,7,4) -> ConvBN(16,32,3,2) -> Residual[ConvBN(32,32,3,1), ConvBN(32,32,3,1)]
    -> ConvBN(32,64,3,2) -> ConvBN(64,128,3,2) -> Residual[ConvBN(128,128,3,1) x 2]
    -> Flatten -> Linear(128,128) -> ReLU -> Linear(128,10). (The course's diagram labels the
    fifth block 32 -> 128; the parameter count the tests assert needs 64 -> 128.)
    """

    def __init__(self, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.model = nn.Sequential(
            ConvBN(3, 16, 7, 4, **kw),                               # (N, 16, 8, 8)
            ConvBN(16, 32, 3, 2, **kw),                              # (N, 32, 4, 4)
            nn.Residual(nn.Sequential(ConvBN(32, 32, 3, 1, **kw),
                                      ConvBN(32, 32, 3, 1, **kw))),  # (N, 32, 4, 4)
            ConvBN(32, 64, 3, 2, **kw),                              # (N, 64, 2, 2)
            ConvBN(64, 128, 3, 2, **kw),                             # (N, 128, 1, 1)
            nn.Residual(nn.Sequential(ConvBN(128, 128, 3, 1, **kw),
                                      ConvBN(128, 128, 3, 1, **kw))),
            nn.Flatten(),                                            # (N, 128)
            nn.Linear(128, 128, **kw),
            nn.ReLU(),
            nn.Linear(128, 10, **kw),                                # (N, 10)
        )

    def forward(self, x):
        return self.model(x)


class LanguageModel(nn.Module):
    """Embedding -> sequence model -> Linear: word ids (T, B) -> logits (T * B, output_size).

    embedding_size: word vector size; output_size: vocabulary size; hidden_size: RNN/LSTM
    state size (the transformer's feed-forward width); seq_model: 'rnn', 'lstm' or
    'transformer' (hw4_extra; causal, positional table of `seq_len` steps, and its head reads
    embedding_size features). Built in the order Embedding(output_size, embedding_size),
    sequence model, Linear.

    forward(x, h=None) -> (logits (T * B, output_size), h): h is (num_layers, B, hidden_size)
    for 'rnn', an (h, c) tuple of those for 'lstm', and the transformer's placeholder for
    'transformer'. Pass h back in (detached) to carry the state across batches.
    """

    def __init__(self, embedding_size, output_size, hidden_size, num_layers=1,
                 seq_model="rnn", seq_len=40, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.embedding_size, self.output_size = embedding_size, output_size
        self.hidden_size, self.num_layers, self.seq_len = hidden_size, num_layers, seq_len
        self.embedding = nn.Embedding(output_size, embedding_size, **kw)
        if seq_model == "rnn":
            self.seq_model = nn.RNN(embedding_size, hidden_size, num_layers, **kw)
            features = hidden_size
        elif seq_model == "lstm":
            self.seq_model = nn.LSTM(embedding_size, hidden_size, num_layers, **kw)
            features = hidden_size
        elif seq_model == "transformer":
            self.seq_model = nn.Transformer(embedding_size, hidden_size, num_layers,
                                            sequence_len=seq_len, **kw)
            features = embedding_size
        else:
            raise ValueError(f"LanguageModel: seq_model must be 'rnn', 'lstm' or "
                             f"'transformer', got {seq_model!r}")
        self.seq_model_name = seq_model
        self.linear = nn.Linear(features, output_size, **kw)

    def forward(self, x, h=None):
        seq_len, batch = x.shape
        embedded = self.embedding(x)                        # (T, B, embedding_size)
        out, h = self.seq_model(embedded, h)                # (T, B, features)
        logits = self.linear(out.reshape((seq_len * batch, out.shape[-1])))
        return logits, h                                    # (T * B, output_size)
