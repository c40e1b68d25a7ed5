"""``fori_loop`` and ``while_loop`` whose bodies may use params, state and keys."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.lifted import _eager_cache, _keys, _lift


def fori_loop(lower: Any, upper: Any, body_fun: Callable[[Any, Any], Any],
              init_val: Any) -> Any:
    """``jax.lax.fori_loop`` inside a transform, state and keys threaded.

    During init the body runs once (with ``i = lower``) before the loop to
    create its params and state, so even a loop of zero steps creates them.
    Every step draws different keys.

    Example::

      def f(x):
        layer = MyLinear(x.shape[-1])
        return mh.lifted.fori_loop(0, 3, lambda i, x: jnp.tanh(layer(x)), x)
    """
    lift = _lift.Lift("mh.lifted.fori_loop", "jax.lax.fori_loop")
    init_key, key = _keys.split_carried_key(lift.draw_key())
    state = lift.init_pass(init_key, lambda: body_fun(
        jnp.asarray(lower, jnp.result_type(lower, upper)), _lift.as_traced(init_val)))
    params = lift.outer.params

    def step(i, carry):
        val, state, key = carry
        return lift.step(body_fun, (i, val), params, state, key)

    # Bounds stay closed over: Python ints keep fori_loop reverse-differentiable.
    val, state, _ = _eager_cache.run_transform(
        lambda carry: jax.lax.fori_loop(lower, upper, step, carry), (init_val, state, key))
    lift.commit(state=state)
    return val


def while_loop(cond_fun: Callable[[Any], Any], body_fun: Callable[[Any], Any],
               init_val: Any) -> Any:
    """``jax.lax.while_loop`` inside a transform, state and keys threaded.

    ``body_fun`` may create params and state during init (they are created
    by running ``cond_fun`` and ``body_fun`` once before the loop) and draw
    keys, different at every step. ``cond_fun`` may read params and state but
    not set state or draw keys. Not reverse-differentiable, like
    ``jax.lax.while_loop``.

    Example::

      def f(x):
        layer = MyLinear(x.shape[-1])
        return mh.lifted.while_loop(lambda x: jnp.sum(x) < 10.0,
                                    lambda x: x + jax.nn.softplus(layer(x)), x)
    """
    lift = _lift.Lift("mh.lifted.while_loop", "jax.lax.while_loop")

    def init_run():
        # cond_fun may create params here (with keys); in the loop it draws none.
        val = _lift.as_traced(init_val)
        cond_fun(val)
        return body_fun(val)

    init_key, key = _keys.split_carried_key(lift.draw_key())
    state = lift.init_pass(init_key, init_run)
    params = lift.outer.params

    def cond(carry):
        val, state, _ = carry
        pred, inner = lift.run(cond_fun, (val,), {}, params, state, _NO_KEYS)
        _lift.check_nothing_created(lift, inner, params, state)
        changed = [p for p, v in inner.state.items() if v is not state[p]]
        if changed:
            raise errors.LiftedBodyError(
                f"mh.lifted.while_loop: cond_fun set state {changed}; only body_fun "
                "may set state. Fix: move the mh.set_state call into body_fun.")
        return pred

    def body(carry):
        val, state, key = carry
        return lift.step(body_fun, (val,), params, state, key)

    val, state, _ = _eager_cache.run_transform(
        lambda carry: jax.lax.while_loop(cond, body, carry), (init_val, state, key))
    lift.commit(state=state)
    return val


_NO_KEYS = _keys.NoKeys(
    "mh.lifted.while_loop: cond_fun drew a random key; only body_fun may draw keys "
    "(cond_fun runs an unknown number of times). Fix: move the mh.next_rng_key call "
    "(or the dropout, or the module drawing it) into body_fun.")
