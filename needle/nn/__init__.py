"""Modules and layers (COURSE_API.md section 6): `import needle.nn as nn`.

module.py  Parameter, Module (parameter walk, train/eval, state dicts)
conv.py    Conv (course), Conv2d, ConvTranspose2d (NCHW, like PyTorch)
pool.py    max_pool2d, MaxPool2d (NCHW, stride = kernel_size)
basic.py   Linear, activations, Sequential, Residual, Dropout, Embedding
norm.py    BatchNorm1d/2d, SyncBatchNorm, LayerNorm1d, InstanceNorm2d
loss.py    SoftmaxLoss, BCEWithLogitsLoss, MSELoss, L1Loss
sequence.py     RNNCell, RNN, LSTMCell, LSTM (course layout: (T, N, features))
transformer.py  MultiHeadAttention, AttentionLayer, TransformerLayer, Transformer
"""
from .basic import (Dropout, Embedding, Flatten, Identity, LeakyReLU, Linear, ReLU, Residual,
                    Sequential, Sigmoid, Tanh)
from .loss import BCEWithLogitsLoss, L1Loss, MSELoss, SoftmaxLoss
from .module import LoadResult, Module, Parameter
from .norm import BatchNorm1d, BatchNorm2d, InstanceNorm2d, LayerNorm1d, SyncBatchNorm
from .sequence import LSTM, RNN, LSTMCell, RNNCell
from .transformer import AttentionLayer, MultiHeadAttention, Transformer, TransformerLayer

from .conv import Conv, Conv2d, ConvTranspose2d
from .pool import MaxPool2d, max_pool2d

__all__ = ["Module", "Parameter", "LoadResult",
           "Identity", "Linear", "Flatten", "ReLU", "LeakyReLU", "Tanh", "Sigmoid",
           "Sequential", "Residual", "Dropout", "Embedding",
           "Conv", "Conv2d", "ConvTranspose2d", "MaxPool2d", "max_pool2d",
           "BatchNorm1d", "BatchNorm2d", "SyncBatchNorm", "LayerNorm1d", "InstanceNorm2d",
           "SoftmaxLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
           "RNNCell", "RNN", "LSTMCell", "LSTM",
           "MultiHeadAttention", "AttentionLayer", "TransformerLayer", "Transformer"]
