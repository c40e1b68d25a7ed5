"""Networks built on minihaiku modules: layers, norms, recurrent cores.

Errors follow one rule. An argument that is wrong on its own (a size that is
not an int >= 1, an unknown padding or data format, a ``b_init`` without a
bias, a flag that is not a bool), given to a constructor or to a function
such as ``max_pool``, is an ``InvalidArgumentError``. An input that does not
fit the module when it is called (the rank, shape, dtype or values of an
array, or a state made for another module) is a ``ModuleInputError``. Both
name the module's path (``"Linear at '~/Linear_0'"``), the value given and
the fix.
"""

from minihaiku.nn._dropout import dropout
from minihaiku.nn.attention import MultiHeadAttention, causal_mask
from minihaiku.nn.batch_norm import BatchNorm
from minihaiku.nn.bias import Bias
from minihaiku.nn.conv import Conv1D, Conv2D, Conv3D, ConvND
from minihaiku.nn.conv_transpose import (
    Conv1DTranspose,
    Conv2DTranspose,
    Conv3DTranspose,
    ConvNDTranspose,
)
from minihaiku.nn.depthwise_conv import DepthwiseConv2D
from minihaiku.nn.embed import Embed
from minihaiku.nn.group_norm import GroupNorm
from minihaiku.nn.instance_norm import InstanceNorm
from minihaiku.nn.layer_norm import LayerNorm
from minihaiku.nn.linear import Linear
from minihaiku.nn.mlp import MLP
from minihaiku.nn.moving_averages import EMAParamsTree, ExponentialMovingAverage
from minihaiku.nn.pool import AvgPool, MaxPool, avg_pool, max_pool
from minihaiku.nn.recurrent import GRU, LSTM, LSTMState, RNNCore, VanillaRNN
from minihaiku.nn.recurrent_containers import DeepRNN, ResetCore
from minihaiku.nn.reshape import Flatten, Reshape
from minihaiku.nn.rms_norm import RMSNorm
from minihaiku.nn.rotary import RotaryEmbedding, apply_rotary, rotary_cos_sin
from minihaiku.nn.sequential import Sequential
from minihaiku.nn.unroll import dynamic_unroll, static_unroll

__all__ = [
    "MultiHeadAttention", "causal_mask", "GroupNorm", "InstanceNorm", "RMSNorm",
    "BatchNorm", "dropout", "Embed", "LayerNorm", "Linear", "MLP", "GRU",
    "LSTM", "LSTMState", "RNNCore", "VanillaRNN", "dynamic_unroll",
    "static_unroll",
    # Convolutions, pooling, containers and small layers.
    "Bias", "Conv1D", "Conv2D", "Conv3D", "ConvND", "Conv1DTranspose",
    "Conv2DTranspose", "Conv3DTranspose", "ConvNDTranspose", "DepthwiseConv2D",
    "AvgPool", "MaxPool", "avg_pool", "max_pool", "DeepRNN", "ResetCore",
    "Flatten", "Reshape", "Sequential",
    # Position embeddings.
    "RotaryEmbedding", "apply_rotary", "rotary_cos_sin",
    # Moving averages in state.
    "ExponentialMovingAverage", "EMAParamsTree",
]
