"""``dropout``: zero out random entries, rescaling the rest."""

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import rng as rng_lib


def dropout(rate: float, x: jax.Array, is_training: bool = True) -> jax.Array:
    """Zeroes each entry of ``x`` with probability ``rate``; scales the rest by ``1/(1-rate)``.

    The mask's key comes from ``mh.next_rng_key()``, so the transformed
    function needs an rng. With ``rate == 0`` or ``is_training=False`` it
    returns ``x`` itself and draws no key.

    Args:
      rate: the drop probability, in ``[0, 1)``.
      x: any array.
      is_training: dropout is the identity when ``False``.

    Returns:
      An array like ``x``.

    Example::

      f = mh.transform(lambda x: mh.nn.dropout(0.5, x))
      y = f.apply({}, 0, jnp.ones([4]))  # entries are 0. or 2.
    """
    if not is_training:
        return x
    try:
        if not 0 <= rate < 1:
            raise errors.MiniHaikuError(
                f"dropout(rate={rate!r}, x of shape {jnp.shape(x)}): rate must "
                "be in [0, 1). Fix: pass the probability of dropping an entry, "
                "e.g. 0.1.")
        if rate == 0:
            return x
    except jax.errors.ConcretizationTypeError:
        pass  # A traced rate: nothing to check or skip.
    keep_rate = 1.0 - rate
    keep = jax.random.bernoulli(rng_lib.next_rng_key(), keep_rate, jnp.shape(x))
    return keep * x / keep_rate
