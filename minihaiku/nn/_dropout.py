"""``dropout``: zero out random entries, rescaling the rest."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import rng as rng_lib


def _static_flag(is_training: Any, shape: Any) -> bool:
    try:
        return bool(is_training)
    except jax.errors.ConcretizationTypeError:
        raise errors.InvalidArgumentError(
            f"dropout(x of shape {shape}) got a traced is_training: whether to "
            "draw a mask must be known when tracing. Fix: pass is_training as a "
            "static argument (jax.jit(..., static_argnums=...) or a Python bool), "
            "or always call dropout and pick with jnp.where(is_training, y, x)."
        ) from None


def dropout(rate: float, x: jax.Array, is_training: bool = True,
            broadcast_dims: Sequence[int] = ()) -> jax.Array:
    """Zeroes each entry of ``x`` with probability ``rate``; scales the rest by ``1/(1-rate)``.

    The mask's key comes from ``mh.next_rng_key()``, so the transformed
    function needs an rng. With ``rate == 0`` or ``is_training=False`` it
    returns ``x`` itself and draws no key.

    Args:
      rate: the drop probability, in ``[0, 1)``.
      x: any array.
      is_training: dropout is the identity when ``False``; a Python bool (or a
        concrete value), never a traced one.
      broadcast_dims: dims along which one mask entry is shared (e.g. ``(0,)``
        drops the same features for every batch entry), as Haiku.

    Returns:
      An array like ``x``.

    Example::

      f = mh.transform(lambda x: mh.nn.dropout(0.5, x))
      y = f.apply({}, 0, jnp.ones([4]))  # entries are 0. or 2.
    """
    if not _static_flag(is_training, jnp.shape(x)):
        return x
    try:
        if not 0 <= rate < 1:
            raise errors.InvalidArgumentError(
                f"dropout(rate={rate!r}, x of shape {jnp.shape(x)}): rate must "
                "be in [0, 1). Fix: pass the probability of dropping an entry, "
                "e.g. 0.1.")
        if rate == 0:
            return x
    except jax.errors.ConcretizationTypeError:
        pass  # A traced rate: nothing to check or skip.
    shape = list(jnp.shape(x))
    for d in broadcast_dims:
        if not isinstance(d, int) or not -len(shape) <= d < len(shape):
            raise errors.InvalidArgumentError(
                f"dropout got broadcast_dims={tuple(broadcast_dims)} for x of shape "
                f"{tuple(jnp.shape(x))}; each must be an axis of x. Fix: pass axes in "
                f"[{-len(shape)}, {len(shape)}).")
        shape[d] = 1
    keep_rate = 1.0 - rate
    keep = jax.random.bernoulli(rng_lib.next_rng_key(), keep_rate, shape)
    return keep * x / keep_rate
