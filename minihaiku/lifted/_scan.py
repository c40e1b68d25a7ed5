"""``scan``: ``jax.lax.scan`` whose body may use params, state and keys."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku.lifted import _eager_cache, _keys, _lift


def scan(f: Callable[[Any, Any], tuple], init: Any, xs: Any,
         length: int | None = None, reverse: bool = False,
         unroll: int = 1) -> tuple:
    """``jax.lax.scan`` of ``f(carry, x) -> (carry, y)`` inside a transform.

    Params are shared across steps (no leading time axis) and are created
    during init by running ``f`` once on the first step's ``x`` before
    scanning. ``mh.set_state`` in ``f`` carries to the next step and out of
    the scan; every step draws different keys.

    Args:
      f: the step function; may build modules and call them.
      init: the initial carry.
      xs: the values to scan over (leading axis), or ``None`` with ``length``.
      length: the number of steps when ``xs`` is ``None``.
      reverse: scan from the end.
      unroll: as in ``jax.lax.scan``.

    Returns:
      ``(final carry, stacked ys)``, as ``jax.lax.scan``.

    Example::

      def f(xs):                        # xs: [time, batch, features]
        cell = MyRNNCell(32)
        h0 = jnp.zeros((xs.shape[1], 32))
        return mh.lifted.scan(lambda h, x: (cell(x, h),) * 2, h0, xs)
    """
    lift = _lift.Lift("mh.lifted.scan", "jax.lax.scan")
    outer = lift.outer
    # Init and apply split the same way, so with the same rng they compute
    # the same outputs.
    init_key, key = _keys.split_carried_key(lift.draw_key())
    state = lift.init_pass(init_key, lambda: f(
        _lift.as_traced(init), _lift.as_traced(_first_step(xs, length, reverse))))
    params = outer.params

    def step(carry, x):
        carry, state, key = carry
        (carry, y), state, key = lift.step(f, (carry, x), params, state, key)
        return (carry, state, key), y

    def run(carry, xs):
        return jax.lax.scan(step, carry, xs, length=length, reverse=reverse, unroll=unroll)

    (carry, state, _), ys = _eager_cache.run_transform(run, (init, state, key), xs)
    lift.commit(state=state)
    return carry, ys


def _first_step(xs, length, reverse):
    """The ``x`` of the first step, or zeros shaped like one if there is none."""
    leaves = jax.tree_util.tree_leaves(xs)
    n = length if not leaves else leaves[0].shape[0]
    if n:
        return jax.tree_util.tree_map(lambda a: a[-1 if reverse else 0], xs)
    return jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape[1:], a.dtype), xs)
