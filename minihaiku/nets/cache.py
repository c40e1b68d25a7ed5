"""``init_cache``: the empty decoding cache of a net, without building its params."""

from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku._transform import TransformedWithState


def init_cache(f: TransformedWithState, *args: Any, **kwargs: Any) -> dict:
    """The state ``f.init(rng, *args, **kwargs)`` would return, built without params.

    The decoding caches of ``mh.nets.GPT2`` and ``mh.nets.Llama``
    (``decode=True``) start as zeros, so the initial state is known from the
    shapes alone: this traces ``f.init`` with ``jax.eval_shape`` (no param
    is created or drawn) and returns zeros of each state entry's shape and
    dtype. Use it with params from elsewhere, e.g. ``mh.interop.load_hf``.

    Args:
      f: a ``mh.transform_with_state`` of a function calling the net with
        ``decode=True``.
      *args: the arguments ``f.init`` takes after ``rng`` (e.g. the prompt:
        its batch size fixes the cache's).
      **kwargs: keyword arguments of ``f.init``.

    Returns:
      The empty cache, ``{path: zeros}``.

    Example::

      config = mh.nets.GPT2Config(vocab_size=64, hidden_size=16, num_layers=2,
                                  num_heads=2, cache_size=32)
      f = mh.transform_with_state(lambda t: mh.nets.GPT2(config)(t, decode=True))
      state = mh.nets.init_cache(f, jnp.zeros([1, 4], jnp.int32))   # cache_index 0
    """
    if not isinstance(f, TransformedWithState):
        raise errors.InvalidArgumentError(
            f"init_cache got {type(f).__name__}; it needs the mh.transform_with_state "
            "of a function calling the net with decode=True.")
    _, state = jax.eval_shape(lambda *a, **k: f.init(0, *a, **k), *args, **kwargs)
    return {path: jnp.zeros(s.shape, s.dtype) for path, s in state.items()}
