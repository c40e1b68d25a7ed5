"""``Llama``: the Llama decoder (and its Mistral / Qwen2 variants) with a KV cache."""

import dataclasses

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nets import _blocks, _causal_attention
from minihaiku.nn.linear import Linear
from minihaiku.nn.rms_norm import RMSNorm
from minihaiku.nn.rotary import apply_rotary, rotary_cos_sin


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """The shape and options of a :class:`Llama`.

    The field names follow Hugging Face's ``LlamaConfig`` where one exists
    (``num_layers`` is ``num_hidden_layers``, ``num_heads`` is
    ``num_attention_heads``, ``num_kv_heads`` is ``num_key_value_heads``).
    Mistral is ``sliding_window``; Qwen2 is ``attention_bias=True`` (biases on
    q, k, v but not on the output projection), usually with
    ``tie_word_embeddings`` on small models and ``rope_theta=1e6``.

    Attributes:
      vocab_size: number of token ids.
      hidden_size: width of the residual stream.
      intermediate_size: width of the SwiGLU MLP.
      num_layers: number of decoder blocks.
      num_heads: number of query heads.
      num_kv_heads: number of key/value heads (grouped-query attention); must
        divide ``num_heads``; ``None`` means ``num_heads``.
      head_dim: size of each head; ``None`` means ``hidden_size // num_heads``.
      rms_norm_eps: the RMSNorms' epsilon.
      rope_theta: the base of the rotary frequencies.
      tie_word_embeddings: the output projection is the embedding table
        (no ``lm_head`` param).
      attention_bias: biases on the q, k, v projections.
      attention_out_bias: a bias on the output projection ``o_proj``
        (Llama's ``attention_bias=True`` sets both).
      mlp_bias: biases on the three MLP projections.
      sliding_window: if set, each query attends only to the latest
        ``sliding_window`` positions (Mistral).
      max_position_embeddings: the longest sequence the checkpoint was
        trained for (kept for ``save_hf``; not enforced).
      init_std: stddev of the normal init of every weight matrix.
      scan_layers: run the blocks under ``mh.lifted.layer_stack`` (params
        stacked with a leading ``num_layers`` axis): same outputs, one
        compiled loop.
      cache_size: positions the key/value cache holds, for ``decode=True``.
      dtype: dtype of the params and the computation (e.g. ``"bfloat16"``).
      model_type: the Hugging Face ``model_type`` ``save_hf`` writes:
        ``"llama"``, ``"mistral"`` or ``"qwen2"``.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_out_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    max_position_embeddings: int = 2048
    init_std: float = 0.02
    scan_layers: bool = False
    cache_size: int | None = None
    dtype: str = "float32"
    model_type: str = "llama"

    def __post_init__(self):
        _blocks.check_config(self, ("vocab_size", "hidden_size", "intermediate_size",
                                    "num_layers", "num_heads", "num_kv_heads", "head_dim",
                                    "sliding_window", "max_position_embeddings",
                                    "cache_size"))
        if self.num_heads % self.kv_heads:
            raise errors.InvalidArgumentError(
                f"LlamaConfig(num_heads={self.num_heads}, num_kv_heads="
                f"{self.num_kv_heads}): num_kv_heads must divide num_heads (each "
                "key/value head serves a group of query heads). Fix: pick a divisor.")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise errors.InvalidArgumentError(
                f"LlamaConfig(hidden_size={self.hidden_size}, num_heads={self.num_heads}): "
                "hidden_size is not a multiple of num_heads. Fix: pass head_dim.")
        if self.dims % 2:
            raise errors.InvalidArgumentError(
                f"LlamaConfig: head_dim={self.dims} must be even (rotary embeddings "
                "rotate pairs of features). Fix: pick an even head_dim.")

    @property
    def kv_heads(self) -> int:
        """``num_kv_heads``, or ``num_heads`` when it is ``None``."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def dims(self) -> int:
        """``head_dim``, or ``hidden_size // num_heads`` when it is ``None``."""
        return self.hidden_size // self.num_heads if self.head_dim is None else self.head_dim


class Llama(Module):
    """The Llama decoder: token ids in, next-token logits out.

    Pre-norm blocks of grouped-query attention with rotary position
    embeddings and a SwiGLU MLP, RMSNorms, as Hugging Face's
    ``LlamaForCausalLM`` (and ``MistralForCausalLM``, ``Qwen2ForCausalLM``
    through the config). Params, under ``<path>/__call__/``:
    ``embed_tokens`` ``[vocab, hidden]``; per block ``layers_<i>/__call__/``
    ``input_layernorm_0``, ``self_attn_0`` (``q_proj_0``, ``k_proj_0``,
    ``v_proj_0``, ``o_proj_0``), ``post_attention_layernorm_0`` and ``mlp_0``
    (``gate_proj_0``, ``up_proj_0``, ``down_proj_0``), each Linear's ``w``
    ``[in, out]``; ``norm_0`` and ``lm_head_0`` (unless tied). With
    ``scan_layers`` there is one ``layers_0`` whose params have a leading
    ``num_layers`` axis.

    Decoding: with ``decode=True`` (needs ``config.cache_size`` and
    ``mh.transform_with_state``) each call appends its tokens' keys and
    values to a cache in state (``cache_index`` under the net,
    ``cached_key``/``cached_value`` under each attention) and attends to
    everything cached so far; default positions continue from the cache.
    ``init``'s state is the empty cache: feed the prompt in one call, then
    one token per call (jit the apply once; it compiles once per length).

    Batches are not padded: every row has the same positions unless
    ``positions`` says otherwise.

    Example::

      config = mh.nets.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                   num_layers=2, num_heads=4, num_kv_heads=2)
      f = mh.transform(lambda t: mh.nets.Llama(config)(t))
      tokens = jnp.zeros([1, 5], jnp.int32)
      logits = f.apply(f.init(0, tokens), None, tokens)   # [1, 5, 64]
    """

    def __init__(self, config: LlamaConfig, name: str | None = None):
        """Builds the net.

        Args:
          config: a :class:`LlamaConfig`.
          name: module name, default ``Llama``.
        """
        super().__init__(name=name)
        _blocks.check_net_config(self, config, LlamaConfig)
        self.config = config

    def __call__(self, tokens: jax.Array, positions: jax.Array | None = None, *,
                 decode: bool = False) -> jax.Array:
        """Returns the logits ``[batch, T, vocab_size]`` of the next token at each step.

        Args:
          tokens: int ``[batch, T]``.
          positions: int ``[batch, T]`` or ``[T]``; default ``0..T-1``, or the
            positions after those already cached when ``decode``.
          decode: use and extend the key/value cache in state.
        """
        c = self.config
        where = f"Llama at '{self.module_path}'"
        tokens, positions, index = _blocks.start(where, tokens, positions, decode,
                                                 c.cache_size)
        dtype = jnp.dtype(c.dtype)
        table = params_lib.get_param("embed_tokens", (c.vocab_size, c.hidden_size), dtype,
                                     jax.nn.initializers.normal(c.init_std))
        x = jnp.take(table, tokens, axis=0)
        # The rotary tables once for all layers (not recomputed and saved per layer).
        cos_sin = rotary_cos_sin(positions, c.dims, c.rope_theta)
        x = _blocks.run_blocks(lambda: _Block(c, name="layers"), c.num_layers,
                               c.scan_layers, x, cos_sin, index)
        x = RMSNorm(-1, c.rms_norm_eps, name="norm")(x)
        if c.tie_word_embeddings:
            return x @ table.T
        return Linear(c.vocab_size, False, _w_init(c), name="lm_head")(x)


def _w_init(c: LlamaConfig) -> jax.nn.initializers.Initializer:
    return jax.nn.initializers.normal(c.init_std)


class _Block(_blocks.Part):
    """One pre-norm block: attention then MLP, each added to the residual stream."""

    def __call__(self, x: jax.Array, cos_sin: tuple[jax.Array, jax.Array],
                 index: jax.Array | None) -> jax.Array:
        c = self.config
        h = RMSNorm(-1, c.rms_norm_eps, name="input_layernorm")(x)
        x = x + _Attention(c, name="self_attn")(h, cos_sin, index)
        h = RMSNorm(-1, c.rms_norm_eps, name="post_attention_layernorm")(x)
        return x + _MLP(c, name="mlp")(h)


class _Attention(_blocks.Part):
    """Grouped-query self-attention with rotary embeddings and the decoding cache."""

    def __call__(self, x: jax.Array, cos_sin: tuple[jax.Array, jax.Array],
                 index: jax.Array | None) -> jax.Array:
        c = self.config
        b, t, _ = x.shape
        heads, kv_heads, dims = c.num_heads, c.kv_heads, c.dims
        w_init = _w_init(c)
        q = Linear(heads * dims, c.attention_bias, w_init, name="q_proj")(x)
        k = Linear(kv_heads * dims, c.attention_bias, w_init, name="k_proj")(x)
        v = Linear(kv_heads * dims, c.attention_bias, w_init, name="v_proj")(x)
        q = apply_rotary(q.reshape(b, t, heads, dims), cos_sin=cos_sin)
        k = apply_rotary(k.reshape(b, t, kv_heads, dims), cos_sin=cos_sin)
        v = v.reshape(b, t, kv_heads, dims)
        out = _causal_attention.attend(q, k, v, index, c.cache_size, c.sliding_window)
        return Linear(c.hidden_size, c.attention_out_bias, w_init,
                      name="o_proj")(out.reshape(b, t, heads * dims))


class _MLP(_blocks.Part):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        w_init = _w_init(c)
        gate = Linear(c.intermediate_size, c.mlp_bias, w_init, name="gate_proj")(x)
        up = Linear(c.intermediate_size, c.mlp_bias, w_init, name="up_proj")(x)
        return Linear(c.hidden_size, c.mlp_bias, w_init,
                      name="down_proj")(jax.nn.silu(gate) * up)
