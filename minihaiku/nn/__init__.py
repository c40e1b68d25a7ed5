"""Networks built on minihaiku modules: layers, norms, recurrent cores."""

from minihaiku.nn.attention import MultiHeadAttention
from minihaiku.nn.attention import causal_mask
from minihaiku.nn.batch_norm import BatchNorm
from minihaiku.nn.bias import Bias
from minihaiku.nn.conv import Conv1D
from minihaiku.nn.conv import Conv2D
from minihaiku.nn.conv import Conv3D
from minihaiku.nn.conv import ConvND
from minihaiku.nn.conv_transpose import Conv1DTranspose
from minihaiku.nn.conv_transpose import Conv2DTranspose
from minihaiku.nn.conv_transpose import Conv3DTranspose
from minihaiku.nn.conv_transpose import ConvNDTranspose
from minihaiku.nn.depthwise_conv import DepthwiseConv2D
from minihaiku.nn.dropout import dropout
from minihaiku.nn.embed import Embed
from minihaiku.nn.group_norm import GroupNorm
from minihaiku.nn.instance_norm import InstanceNorm
from minihaiku.nn.layer_norm import LayerNorm
from minihaiku.nn.linear import Linear
from minihaiku.nn.mlp import MLP
from minihaiku.nn.pool import AvgPool
from minihaiku.nn.pool import MaxPool
from minihaiku.nn.pool import avg_pool
from minihaiku.nn.pool import max_pool
from minihaiku.nn.recurrent import GRU
from minihaiku.nn.recurrent import LSTM
from minihaiku.nn.recurrent import LSTMState
from minihaiku.nn.recurrent import RNNCore
from minihaiku.nn.recurrent import VanillaRNN
from minihaiku.nn.recurrent_containers import DeepRNN
from minihaiku.nn.recurrent_containers import ResetCore
from minihaiku.nn.reshape import Flatten
from minihaiku.nn.reshape import Reshape
from minihaiku.nn.sequential import Sequential
from minihaiku.nn.rms_norm import RMSNorm
from minihaiku.nn.unroll import dynamic_unroll
from minihaiku.nn.unroll import static_unroll

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
]
