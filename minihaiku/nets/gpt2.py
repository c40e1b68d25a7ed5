"""``GPT2``: the GPT-2 decoder with learned positions and a KV cache."""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nets import _blocks, _causal_attention
from minihaiku.nn.layer_norm import LayerNorm
from minihaiku.nn.linear import Linear

# Hugging Face's names for GPT-2's activations ("gelu_new" is the tanh approximation).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """The shape and options of a :class:`GPT2`.

    Hugging Face's ``GPT2Config`` names are ``n_embd`` (``hidden_size``),
    ``n_layer`` (``num_layers``), ``n_head`` (``num_heads``), ``n_positions``
    (``max_position_embeddings``), ``n_inner`` (``intermediate_size``),
    ``activation_function`` (``activation``).

    Attributes:
      vocab_size: number of token ids.
      hidden_size: width of the residual stream.
      num_layers: number of blocks.
      num_heads: number of attention heads (must divide ``hidden_size``).
      max_position_embeddings: rows of the learned position table.
      intermediate_size: width of the MLP; ``None`` means ``4 * hidden_size``.
      activation: the MLP's activation, by its Hugging Face name
        (``"gelu_new"``, ``"gelu"``, ``"relu"``, ...).
      layer_norm_eps: the LayerNorms' epsilon.
      init_std: stddev of the normal init of every weight matrix and table.
      scan_layers: run the blocks under ``mh.lifted.layer_stack``.
      cache_size: positions the key/value cache holds, for ``decode=True``.
      dtype: dtype of the params and the computation.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    max_position_embeddings: int = 1024
    intermediate_size: int | None = None
    activation: str = "gelu_new"
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    scan_layers: bool = False
    cache_size: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        _blocks.check_config(self, ("vocab_size", "hidden_size", "num_layers", "num_heads",
                                    "max_position_embeddings", "intermediate_size",
                                    "cache_size"))
        if self.hidden_size % self.num_heads:
            raise errors.InvalidArgumentError(
                f"GPT2Config(hidden_size={self.hidden_size}, num_heads={self.num_heads}): "
                "num_heads must divide hidden_size. Fix: pick a divisor.")
        if self.activation not in ACTIVATIONS:
            raise errors.InvalidArgumentError(
                f"GPT2Config(activation={self.activation!r}) is not one of "
                f"{sorted(ACTIVATIONS)}. Fix: pick one of those.")


class GPT2(Module):
    """GPT-2: token ids in, next-token logits out (the output layer is the token table).

    Pre-norm blocks of causal multi-head attention and a GELU MLP, learned
    position embeddings, as Hugging Face's ``GPT2LMHeadModel``. Params, under
    ``<path>/__call__/``: ``wte`` ``[vocab, hidden]``, ``wpe``
    ``[max_position_embeddings, hidden]``; per block ``h_<i>/__call__/``
    ``ln_1_0``, ``attn_0`` (``c_attn_0`` the fused q, k, v projection
    ``[hidden, 3 * hidden]``, ``c_proj_0``), ``ln_2_0``, ``mlp_0``
    (``c_fc_0``, ``c_proj_0``); ``ln_f_0``. Linears store ``w`` as ``[in,
    out]``, as GPT-2's ``Conv1D`` does. With ``scan_layers`` there is one
    ``h_0`` whose params have a leading ``num_layers`` axis.

    ``decode=True`` uses a key/value cache in state exactly as
    :class:`Llama` does.

    Example::

      config = mh.nets.GPT2Config(vocab_size=64, hidden_size=16, num_layers=2,
                                  num_heads=2, max_position_embeddings=32)
      f = mh.transform(lambda t: mh.nets.GPT2(config)(t))
      tokens = jnp.zeros([1, 5], jnp.int32)
      logits = f.apply(f.init(0, tokens), None, tokens)   # [1, 5, 64]
    """

    def __init__(self, config: GPT2Config, name: str | None = None):
        """Builds the net.

        Args:
          config: a :class:`GPT2Config`.
          name: module name, default ``GPT2``.
        """
        super().__init__(name=name)
        _blocks.check_net_config(self, config, GPT2Config)
        self.config = config

    def __call__(self, tokens: jax.Array, positions: jax.Array | None = None, *,
                 decode: bool = False) -> jax.Array:
        """Returns the logits ``[batch, T, vocab_size]`` of the next token at each step.

        Args:
          tokens: int ``[batch, T]``.
          positions: int ``[batch, T]`` or ``[T]``, rows of the position table;
            default ``0..T-1``, or the positions after those already cached
            when ``decode``.
          decode: use and extend the key/value cache in state.
        """
        c = self.config
        where = f"GPT2 at '{self.module_path}'"
        tokens, positions, index = _blocks.start(where, tokens, positions, decode,
                                                 c.cache_size)
        dtype = jnp.dtype(c.dtype)
        init = jax.nn.initializers.normal(c.init_std)
        wte = params_lib.get_param("wte", (c.vocab_size, c.hidden_size), dtype, init)
        wpe = params_lib.get_param("wpe", (c.max_position_embeddings, c.hidden_size),
                                   dtype, init)
        x = jnp.take(wte, tokens, axis=0) + jnp.take(wpe, positions, axis=0)
        x = _blocks.run_blocks(lambda: _Block(c, name="h"), c.num_layers, c.scan_layers,
                               x, index)
        x = LayerNorm(-1, eps=c.layer_norm_eps, name="ln_f")(x)
        return x @ wte.T


class _Block(_blocks.Part):
    """One pre-norm block: attention then MLP, each added to the residual stream."""

    def __call__(self, x: jax.Array, index: jax.Array | None) -> jax.Array:
        c = self.config
        x = x + _Attention(c, name="attn")(
            LayerNorm(-1, eps=c.layer_norm_eps, name="ln_1")(x), index)
        h = LayerNorm(-1, eps=c.layer_norm_eps, name="ln_2")(x)
        return x + _MLP(c, name="mlp")(h)


class _Attention(_blocks.Part):
    """Causal multi-head self-attention with one fused q, k, v projection."""

    def __call__(self, x: jax.Array, index: jax.Array | None) -> jax.Array:
        c = self.config
        b, t, d = x.shape
        w_init = jax.nn.initializers.normal(c.init_std)
        qkv = Linear(3 * d, True, w_init, name="c_attn")(x)
        q, k, v = (y.reshape(b, t, c.num_heads, d // c.num_heads)
                   for y in jnp.split(qkv, 3, axis=-1))
        out = _causal_attention.attend(q, k, v, index, c.cache_size)
        return Linear(d, True, w_init, name="c_proj")(out.reshape(b, t, d))


class _MLP(_blocks.Part):
    """``c_proj(activation(c_fc(x)))``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        w_init = jax.nn.initializers.normal(c.init_std)
        inner = c.intermediate_size or 4 * c.hidden_size
        h = ACTIVATIONS[c.activation](Linear(inner, True, w_init, name="c_fc")(x))
        return Linear(c.hidden_size, True, w_init, name="c_proj")(h)
