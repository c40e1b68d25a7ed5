"""``remat``: ``jax.checkpoint`` inside a transformed function."""

import functools
from typing import Any, Callable, Optional, Sequence, Union

import jax

from minihaiku.lifted import _frames


def remat(f: Callable[..., Any], *, policy: Optional[Callable[..., bool]] = None,
          prevent_cse: bool = True,
          static_argnums: Union[int, Sequence[int]] = ()) -> Callable[..., Any]:
    """``jax.checkpoint`` of ``f``, which may use params, state and keys.

    The backward pass recomputes ``f``'s intermediate values instead of
    storing them: same values and gradients, fewer saved residuals. Params
    created by ``f`` during init get the paths they would get without remat.

    Args:
      f: the function to rematerialise.
      policy: a ``jax.checkpoint_policies`` policy (what may be saved).
      prevent_cse: as in ``jax.checkpoint``.
      static_argnums: positional arguments passed as Python values (e.g.
        flags ``f`` branches on) instead of being traced.

    Returns:
      ``f`` rematerialised, with the same signature.

    Example::

      def f(x):
        for _ in range(4):
          x = mh.lifted.remat(lambda x: jnp.tanh(MyLinear(256)(x)))(x)
        return x
    """
    statics = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    @functools.wraps(f)
    def rematted(*args, **kwargs):
        lift = _frames.Lift("mh.lifted.remat", "jax.checkpoint")
        outer = lift.outer
        static = {i % len(args): args[i] for i in statics if -len(args) <= i < len(args)}
        dynamic = [a for i, a in enumerate(args) if i not in static]

        def body(state, key, dynamic):
            it = iter(dynamic)
            full = [static[i] if i in static else next(it) for i in range(len(args))]
            out, inner = lift.run(f, full, kwargs, outer.params, state, key)
            new_params = _frames.created(inner.params, outer.params)
            return out, new_params, inner.state, _frames.created(inner.initial_state)

        checkpointed = jax.checkpoint(body, prevent_cse=prevent_cse, policy=policy)
        out, params, state, initial_state = _frames.call(
            checkpointed, outer.state, lift.draw_key(), dynamic)
        lift.commit(params, state, initial_state)
        return out

    return rematted
