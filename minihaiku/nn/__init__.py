"""Networks built on minihaiku modules: layers, norms, recurrent cores."""

from minihaiku.nn.attention import MultiHeadAttention
from minihaiku.nn.attention import causal_mask
from minihaiku.nn.batch_norm import BatchNorm
from minihaiku.nn.dropout import dropout
from minihaiku.nn.embed import Embed
from minihaiku.nn.group_norm import GroupNorm
from minihaiku.nn.instance_norm import InstanceNorm
from minihaiku.nn.layer_norm import LayerNorm
from minihaiku.nn.linear import Linear
from minihaiku.nn.mlp import MLP
from minihaiku.nn.recurrent import GRU
from minihaiku.nn.recurrent import LSTM
from minihaiku.nn.recurrent import LSTMState
from minihaiku.nn.recurrent import RNNCore
from minihaiku.nn.recurrent import VanillaRNN
from minihaiku.nn.rms_norm import RMSNorm
from minihaiku.nn.unroll import dynamic_unroll
from minihaiku.nn.unroll import static_unroll

__all__ = [
    "MultiHeadAttention", "causal_mask", "GroupNorm", "InstanceNorm", "RMSNorm",
    "BatchNorm", "dropout", "Embed", "LayerNorm", "Linear", "MLP", "GRU",
    "LSTM", "LSTMState", "RNNCore", "VanillaRNN", "dynamic_unroll",
    "static_unroll",
]
