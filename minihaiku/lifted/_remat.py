"""``remat``: ``jax.checkpoint`` inside a transformed function."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from minihaiku import errors
from minihaiku import rng as rng_lib
from minihaiku.lifted import _eager_cache, _keys, _lift


def remat(f: Callable[..., Any], *, policy: Callable[..., bool] | None = None,
          prevent_cse: bool = True,
          static_argnums: int | Sequence[int] = ()) -> Callable[..., Any]:
    """``jax.checkpoint`` of ``f``, which may use params, state and keys.

    The backward pass recomputes ``f``'s intermediate values instead of
    storing them: same values and gradients, fewer saved residuals. During
    init ``f`` simply runs (nothing is differentiated there), so ``remat(f)``
    creates exactly the params ``f`` would: same paths, same values.

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
          x = mh.lifted.remat(lambda x: jnp.tanh(mh.nn.Linear(256)(x)))(x)
        return x
    """
    statics = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    @functools.wraps(f)
    def rematted(*args, **kwargs):
        lift = _lift.Lift("mh.lifted.remat", "jax.checkpoint")
        outer = lift.outer
        if outer.is_init:
            # Checkpointing only matters for a backward pass; running f in
            # the outer frame keeps remat(f)'s init identical to f's.
            static = _statics(args, statics)
            # Arguments as jax.checkpoint traces them in apply (keyword
            # arguments are closed over there, so they stay as given).
            return f(*[a if i in static else _lift.as_traced(a) for i, a in enumerate(args)],
                     **kwargs)
        static = _statics(args, statics)
        dynamic = [a for i, a in enumerate(args) if i not in static]

        # The outer key sequence goes in and comes back out as arrays, so f
        # draws exactly the keys it would draw without remat.
        seq = outer.rng

        def body(state, snapshot, dynamic):
            it = iter(dynamic)
            full = [static[i] if i in static else next(it) for i in range(len(args))]
            inner_seq = _sequence(snapshot)
            try:
                out, inner = lift.run(f, full, kwargs, outer.params, state, inner_seq)
            except jax.errors.ConcretizationTypeError as e:  # e.g. TracerBoolConversionError
                raise _traced_flag_error(f, statics, e) from e
            return (out, inner.state, _lift.created(inner.initial_state),
                    None if inner_seq is None else inner_seq.snapshot())

        checkpointed = jax.checkpoint(body, prevent_cse=prevent_cse, policy=policy)
        out, state, initial_state, snapshot = _eager_cache.run_transform(
            checkpointed, dict(outer.state), None if seq is None else seq.snapshot(), dynamic)
        if seq is not None:
            seq.restore(snapshot)
        lift.commit(state=state, initial_state=initial_state)
        return out

    return rematted


def _statics(args: Sequence, statics: Any) -> dict:
    """Position -> value of the static arguments present in ``args``."""
    return {i % len(args): args[i] for i in statics if -len(args) <= i < len(args)}


def _sequence(snapshot):
    """The key sequence continuing from ``snapshot`` (``None`` and ``NoKeys`` pass as is)."""
    if snapshot is None or isinstance(snapshot, _keys.NoKeys):
        return snapshot
    return rng_lib.PRNGSequence.from_snapshot(snapshot)


def _traced_flag_error(f: Callable, statics: Any, e: Exception) -> errors.InvalidArgumentError:
    name = getattr(f, "__qualname__", repr(f))
    return errors.InvalidArgumentError(
        f"mh.lifted.remat({name}): the function needed the Python value of a traced "
        f"argument (e.g. `if flag:`), but remat traces its arguments (static_argnums="
        f"{statics}). Fix: pass such arguments as Python values and name them in "
        "static_argnums, e.g. mh.lifted.remat(f, static_argnums=(1,)); or use "
        f"jnp.where / mh.lifted.cond. JAX said: {type(e).__name__}: "
        f"{str(e).splitlines()[0]}")
