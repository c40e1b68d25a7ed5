"""Causal self-attention of decoder nets, with the key/value cache kept in state.

Shared by ``GPT2`` and ``Llama``: each projects its own queries, keys and
values (names and RoPE differ), then calls :func:`attend`. The cache is two
state entries of the calling module, ``cached_key`` and ``cached_value``
``[batch, cache_size, kv_heads, head_dim]``; the write position ``index`` is
owned by the net (one counter for all layers) and passed in, so under
``layer_stack`` the cache stacks per layer and the index does not.
"""

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import state as state_lib


def attend(q: jax.Array, k: jax.Array, v: jax.Array, index: jax.Array | None,
           cache_size: int | None, window: int | None = None) -> jax.Array:
    """Causal attention of ``q [B,T,H,D]`` over ``k``/``v`` ``[B,T,Hkv,D]``.

    With ``index`` None, query ``i`` sees keys ``0..i`` of this call. With an
    ``index`` (int32 scalar: positions already in the cache), this call's
    keys/values are written to the cache at ``index`` and query ``i`` sees
    cache slots ``0..index+i``. With a ``window``, a query also sees only the
    ``window`` latest keys (itself included): Mistral's sliding window.

    As ``mh.nn.MultiHeadAttention``, under ``jax.softmax_custom_jvp(True)``:
    the backward pass keeps the softmax's output only.
    """
    with jax.softmax_custom_jvp(True):
        return _attend(q, k, v, index, cache_size, window)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, index: jax.Array | None,
            cache_size: int | None, window: int | None) -> jax.Array:
    scale = 1.0 / (q.shape[-1] ** 0.5)
    t = q.shape[1]
    if index is None:
        if window is None or window >= t:
            return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True)
        query_pos = key_pos = jnp.arange(t)
        return jax.nn.dot_product_attention(
            q, k, v, scale=scale, mask=_visible(query_pos, key_pos, window)[None, None])
    assert cache_size is not None
    b, _, kv_heads, head_dim = k.shape
    shape = (b, cache_size, kv_heads, head_dim)
    cached_k = state_lib.get_state("cached_key", shape, k.dtype, init=jnp.zeros)
    cached_v = state_lib.get_state("cached_value", shape, v.dtype, init=jnp.zeros)
    start = (0, index, 0, 0)
    cached_k = jax.lax.dynamic_update_slice(cached_k, k, start)
    cached_v = jax.lax.dynamic_update_slice(cached_v, v, start)
    state_lib.set_state("cached_key", cached_k)
    state_lib.set_state("cached_value", cached_v)
    visible = _visible(index + jnp.arange(t), jnp.arange(cache_size), window)
    return jax.nn.dot_product_attention(q, cached_k, cached_v, mask=visible[None, None],
                                        scale=scale)


def _visible(query_pos: jax.Array, key_pos: jax.Array, window: int | None) -> jax.Array:
    """``[T, S]``: key ``j`` is visible to query ``i`` (causal, within the window)."""
    visible = key_pos[None, :] <= query_pos[:, None]
    if window is not None:
        visible = visible & (query_pos[:, None] - key_pos[None, :] < window)
    return visible


def next_index(where: str, cache_size: int | None, steps: int) -> jax.Array:
    """Reads the net's ``cache_index`` state, advances it by ``steps``, returns the old value.

    Eagerly (a concrete index), writing past ``cache_size`` is an error;
    under ``jit`` the index is not known and is not checked
    (``dynamic_update_slice`` would clamp it).
    """
    if cache_size is None:
        raise errors.ModuleInputError(
            f"{where}: decode=True needs a key/value cache, but the config has "
            "cache_size=None. Fix: build the config with cache_size=N (the most "
            "positions one sequence will hold), e.g. dataclasses.replace(config, "
            "cache_size=256).")
    index = state_lib.get_state("cache_index", (), jnp.int32, init=jnp.zeros)
    if not isinstance(index, jax.core.Tracer) and int(index) + steps > cache_size:
        raise errors.ModuleInputError(
            f"{where}: the decoding cache holds {cache_size} positions, {int(index)} "
            f"are written and this call adds {steps}. Fix: raise cache_size in the "
            "config, or restart from an empty cache (init's state).")
    state_lib.set_state("cache_index", index + steps)
    return index
