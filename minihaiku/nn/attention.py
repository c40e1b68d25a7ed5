"""``MultiHeadAttention``: Haiku's multi-head attention, plus grouped kv heads and a cache."""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import state as state_lib
from minihaiku.module import Module
from minihaiku.nn._heads_linear import HeadsLinear
from minihaiku.params import Initializer


def causal_mask(t: int, s: int | None = None) -> jax.Array:
    """A ``[t, s]`` bool mask where query ``i`` sees keys ``0..i`` (``s`` defaults to ``t``).

    Example::

      mask = mh.nn.causal_mask(3)   # [[1, 0, 0], [1, 1, 0], [1, 1, 1]] as bools
    """
    return jnp.tril(jnp.ones((t, t if s is None else s), bool))


class MultiHeadAttention(Module):
    """Multi-head attention, computing what Haiku's ``MultiHeadAttention`` computes.

    ``query``/``key``/``value`` of shape ``[..., T, D]`` (keys and values
    ``[..., S, D]``) are projected by the Linears ``query`` (``num_heads *
    key_size``), ``key`` (``num_kv_heads * key_size``) and ``value``
    (``num_kv_heads * value_size``), attended per head with logits ``q·k /
    sqrt(key_size)`` and a softmax over ``S``, and projected back by the
    Linear ``linear`` to ``model_size``. Params, under ``<path>/__call__/``:
    ``query_0/__call__/{w,b}``, ``key_0/...``, ``value_0/...``,
    ``linear_0/...``, Haiku's layout (the four are ``Linear`` modules that
    keep the heads axis in their matmuls). Computed with
    ``jax.nn.dot_product_attention``, under ``jax.softmax_custom_jvp(True)``:
    the backward pass keeps the softmax's output, not also its unnormalised
    exponentials (same values; one ``[B, H, T, S]`` array less per call).

    ``mask`` (true = attend) may be ``[T, S]``, ``[..., T, S]`` (the query's
    leading axes, shared by the heads) or ``[..., H, T, S]`` (Haiku's, ``H``
    being ``num_heads`` or 1); ``is_causal=True`` adds
    :func:`causal_mask`. A query whose keys are all masked out gets the
    uniform average of the values, as in Haiku.

    *New*: ``num_kv_heads`` (grouped-query attention): query head ``n``
    uses key/value head ``n // (num_heads // num_kv_heads)``;
    ``num_kv_heads=num_heads`` (the default) is plain multi-head attention.

    *New*: ``cache_size`` turns on the decoding cache, kept in state (needs
    ``mh.transform_with_state``): ``cached_key`` ``[..., cache_size,
    num_kv_heads, key_size]``, ``cached_value`` (same with ``value_size``)
    and ``cache_index`` (int32, tokens written so far). Each call writes its
    ``T`` projected keys/values at ``cache_index``, attends causally over
    everything written so far (query ``i`` of the call is position
    ``cache_index + i``), and advances ``cache_index`` by ``T``; ``key`` and
    ``value`` must have ``T`` steps too. ``init``'s state is the empty cache,
    so feed a prompt in one call and then one token per call with the same
    jitted apply. A given ``mask`` must then be ``[..., cache_size]`` wide.
    Under ``mh.lifted.layer_stack`` the cache gets a leading layer axis like
    every state entry. Writing past ``cache_size`` is a ``ModuleInputError``
    whenever the index is known on the host: eagerly, also under
    ``layer_stack`` and the other lifted transforms (the stacked index is
    read before the scan runs). Under ``jit`` it is not checked:
    ``jax.lax.dynamic_update_slice`` clamps the write and ``cache_index``
    stops at ``cache_size``.

    Haiku 0.0.17 requires ``w_init`` (it raises without it); so does this.

    Example::

      w_init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
      f = mh.transform(lambda x: mh.nn.MultiHeadAttention(2, 4, w_init)(x, x, x))
      x = jnp.ones([1, 5, 8])
      y = f.apply(f.init(0, x), None, x)   # [1, 5, 8]
    """

    def __init__(self, num_heads: int, key_size: int,
                 w_init: Initializer | None = None,
                 value_size: int | None = None,
                 model_size: int | None = None, *,
                 num_kv_heads: int | None = None,
                 with_bias: bool = True,
                 b_init: Initializer | None = None,
                 cache_size: int | None = None,
                 name: str | None = None):
        """Builds the layer.

        Args:
          num_heads: number of query heads.
          key_size: size of each query/key head.
          w_init: ``init(key, shape, dtype)`` of every ``w`` (required, as in
            Haiku 0.0.17).
          value_size: size of each value head (default ``key_size``).
          model_size: output size (default ``key_size * num_heads``).
          num_kv_heads: number of key/value heads; must divide ``num_heads``
            (default ``num_heads``).
          with_bias: whether the four Linears have a bias.
          b_init: ``init(key, shape, dtype)`` of every ``b`` (default zeros).
          cache_size: if given, the maximum number of positions the decoding
            cache holds (see above).
          name: module name, default ``MultiHeadAttention``.
        """
        super().__init__(name=name)
        self._where = where = f"{type(self).__name__} at '{self.module_path}'"
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        sizes = {"num_heads": num_heads, "key_size": key_size,
                 "value_size": value_size, "model_size": model_size,
                 "num_kv_heads": num_kv_heads, "cache_size": cache_size}
        for arg, v in sizes.items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise errors.InvalidArgumentError(
                    f"{where}: {arg}={v!r} must be an int >= 1. Fix: pass e.g. {arg}=8.")
        if num_heads % num_kv_heads:
            raise errors.InvalidArgumentError(
                f"{where}: num_heads={num_heads} is not a multiple of "
                f"num_kv_heads={num_kv_heads}; each key/value head serves a group "
                "of query heads. Fix: pick num_kv_heads dividing num_heads.")
        if w_init is None:
            raise errors.InvalidArgumentError(
                f"{where} needs w_init (Haiku 0.0.17 requires it too). Fix: pass e.g. "
                "w_init=jax.nn.initializers.variance_scaling(1.0, 'fan_in', "
                "'truncated_normal').")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.key_size = key_size
        self.value_size = value_size or key_size
        self.model_size = model_size or key_size * num_heads
        self.w_init = w_init
        self.with_bias = with_bias
        self.b_init = b_init
        self.cache_size = cache_size

    def __call__(self, query: jax.Array, key: jax.Array, value: jax.Array,
                 mask: jax.Array | None = None, *,
                 is_causal: bool = False) -> jax.Array:
        """Attends from ``query`` to ``key``/``value``.

        Args:
          query: ``[..., T, D_q]``.
          key: ``[..., S, D_k]``, the same leading axes as ``query``.
          value: ``[..., S, D_v]``.
          mask: optional bool ``[T, S]``, ``[..., T, S]`` or ``[..., H, T, S]``.
          is_causal: also mask out keys after each query (``S`` aligned with ``T``).

        Returns:
          ``[..., T, model_size]``.
        """
        where = self._where
        query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
        lead, t = _check_inputs(where, query, key, value)
        q = self._project(query, self.num_heads, self.key_size, "query")
        k = self._project(key, self.num_kv_heads, self.key_size, "key")
        v = self._project(value, self.num_kv_heads, self.value_size, "value")
        s = k.shape[-3]
        if mask is not None:
            if self.cache_size is not None:
                s = self.cache_size
            mask = _mask_4d(where, mask, lead, self.num_heads, t, s)
        if self.cache_size is not None:
            k, v, visible, s = self._use_cache(where, lead, t, k, v, self.cache_size)
            mask = visible if mask is None else jnp.logical_and(mask, visible)
            is_causal = False  # the cache mask is causal already
        flat = (-1,) + q.shape[-3:]
        out = _attend(q.reshape(flat), k.reshape((-1,) + k.shape[-3:]),
                      v.reshape((-1,) + v.shape[-3:]), mask, is_causal,
                      1.0 / math.sqrt(self.key_size))
        out = out.reshape(lead + (t, self.num_heads, self.value_size))
        return HeadsLinear(self.model_size, self.with_bias, self.w_init, self.b_init,
                           name="linear")(out)

    def _project(self, x: jax.Array, heads: int, size: int, name: str) -> jax.Array:
        return HeadsLinear(heads * size, self.with_bias, self.w_init, self.b_init,
                           name=name)(x, heads)

    def _use_cache(self, where: str, lead: tuple[int, ...], t: int, k: jax.Array,
                   v: jax.Array, size: int) -> tuple[jax.Array, jax.Array, jax.Array, int]:
        if k.shape[-3] != t:
            raise errors.ModuleInputError(
                f"{where}: with cache_size set, key/value must have as many steps "
                f"as the query ({t}), got {k.shape[-3]}. Fix: pass this call's new "
                "tokens as query, key and value (self-attention decoding).")
        index = state_lib.get_state("cache_index", (), jnp.int32, init=jnp.zeros)
        cached_k = state_lib.get_state("cached_key", lead + (size,) + k.shape[-2:],
                                       k.dtype, init=jnp.zeros)
        cached_v = state_lib.get_state("cached_value", lead + (size,) + v.shape[-2:],
                                       v.dtype, init=jnp.zeros)
        written = _written(index)
        if written is not None and written + t > size:
            raise errors.ModuleInputError(
                f"{where}: the decoding cache holds {size} positions, "
                f"{written} are written and this call adds {t}. Fix: build the "
                "module with a larger cache_size, or restart from init's state.")
        start: tuple[int | jax.Array, ...] = (0,) * len(lead) + (index, 0, 0)
        cached_k = jax.lax.dynamic_update_slice(cached_k, k, start)
        cached_v = jax.lax.dynamic_update_slice(cached_v, v, start)
        state_lib.set_state("cached_key", cached_k)
        state_lib.set_state("cached_value", cached_v)
        # Unchecked (under jit) writes clamp; so does the index, to stay a position.
        state_lib.set_state("cache_index", index + t if written is not None
                            else jnp.minimum(index + t, size))
        visible = (jnp.arange(size)[None, :]
                   <= (index + jnp.arange(t))[:, None])  # [T, cache_size]
        return cached_k, cached_v, visible[None, None], size


def _written(index: jax.Array) -> int | None:
    """How many positions the cache holds, if known on the host; else ``None``.

    Eagerly the index is concrete. Under a lifted transform (e.g.
    ``layer_stack``) run eagerly it is a traced slice of a concrete stacked
    entry that an enclosing frame keeps under the same path, read here
    before the scan runs: the most written of any layer. Under ``jax.jit``
    nothing is concrete.
    """
    if not isinstance(index, jax.core.Tracer):
        return int(index)
    stack = frame_lib.frames()
    # The entry's path, found by the value get_state returned (only read while
    # tracing, so its cost never reaches a jitted step).
    path = next((k for k, v in stack[-1].state.items() if v is index), None)
    for frame in reversed(stack[:-1]):
        value = None if path is None else frame.state.get(path)
        if value is not None and not isinstance(value, jax.core.Tracer):
            return int(np.asarray(value).max())  # on the host: jnp would be traced
    return None


def _check_inputs(where: str, query: Any, key: Any, value: Any) -> tuple:
    """Returns the query's leading axes and T, after checking the three shapes agree."""
    for arg, x in (("query", query), ("key", key), ("value", value)):
        if x.ndim < 2:
            raise errors.ModuleInputError(
                f"{where}: {arg} has shape {x.shape}; it needs [..., T, features]. "
                f"Fix: add a sequence axis, e.g. {arg}[None].")
    if key.shape[:-1] != value.shape[:-1]:
        raise errors.ModuleInputError(
            f"{where}: key {key.shape} and value {value.shape} differ before the "
            "feature axis. Fix: give them the same [..., S] axes.")
    if query.shape[:-2] != key.shape[:-2]:
        raise errors.ModuleInputError(
            f"{where}: query {query.shape} and key {key.shape} have different "
            "leading (batch) axes. Fix: give them the same leading axes.")
    return query.shape[:-2], query.shape[-2]


def _mask_4d(where: str, mask: jax.Array, lead: tuple[int, ...], heads: int, t: int,
             s: int) -> jax.Array:
    """The mask as ``[B or 1, H or 1, T or 1, S or 1]`` for the flattened batch ``B``."""
    mask = jnp.asarray(mask)
    given = mask.shape
    if mask.dtype != bool:
        mask = mask != 0
    n = len(lead)
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim in (n + 2, n + 3):
        if mask.ndim == n + 2:
            mask = mask[..., None, :, :]
        if not _broadcasts_to(mask.shape, lead + (heads, t, s)):
            raise errors.ModuleInputError(
                f"{where}: mask of shape {given} does not broadcast to "
                f"{lead + (heads, t, s)} ([..., heads, T, S]). Fix: pass [T, S], "
                "[..., T, S] or [..., heads or 1, T, S].")
        if n != 1:
            mask = jnp.broadcast_to(mask, lead + mask.shape[-3:]).reshape(
                (-1,) + mask.shape[-3:])
    else:
        raise errors.ModuleInputError(
            f"{where}: mask has rank {mask.ndim} (shape {mask.shape}); with a query "
            f"of leading axes {lead} it must be [T, S], [..., T, S] or "
            "[..., heads, T, S]. Fix: reshape the mask.")
    if not _broadcasts_to(mask.shape[-2:], (t, s)):
        raise errors.ModuleInputError(
            f"{where}: mask of shape {given} does not fit T={t}, S={s} (S is "
            "cache_size when the decoding cache is on). Fix: pass a mask whose last "
            "two axes are [T, S] (or 1 to broadcast).")
    return mask


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return jnp.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, is_causal: bool,
            scale: float | None) -> jax.Array:
    """``softmax(q k^T * scale, masked) v`` per head; q ``[B,T,N,K]``, k/v ``[B,S,Nkv,.]``."""
    k_size, v_size = q.shape[-1], v.shape[-1]
    # JAX's newer softmax derivative (to be its default) keeps only the
    # softmax's output for the backward pass; the old one also keeps the
    # unnormalised exponentials and their sums, a [B, N, T, S] array more per
    # call written and read back. Same values; gradients equal up to rounding.
    with jax.softmax_custom_jvp(True):
        if k_size == v_size:
            return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale,
                                                is_causal=is_causal)
        # jax.nn.dot_product_attention wants one head size for q, k and v; zero
        # columns add nothing to q·k and give zero outputs, which are cut off.
        size = max(k_size, v_size)
        pad = lambda x: jnp.pad(x, ((0, 0),) * 3 + ((0, size - x.shape[-1]),))  # noqa: E731
        out = jax.nn.dot_product_attention(pad(q), pad(k), pad(v), mask=mask,
                                           scale=scale, is_causal=is_causal)
    return out[..., :v_size]
