"""``layer_stack``: n layers with stacked params and state, run as one scan."""

import functools
from collections.abc import Callable

import jax

from minihaiku import errors
from minihaiku.lifted import _eager_cache, _frames


def layer_stack(num_layers: int, *, unroll: int = 1) -> Callable[[Callable], Callable]:
    """Decorator applying ``f`` ``num_layers`` times, each layer with its own params and state.

    ``layer_stack(n)(f)(x, *args, **kwargs)`` computes ``x = f(x, *args,
    **kwargs)`` n times (the extra arguments go to every layer). Every param
    and state entry ``f`` touches is per-layer: it is stored at the path it
    would have without the stack, with a leading axis of size n, and layer i
    uses slice i. Each layer is initialised from its own key. Both init and
    apply compile as one ``jax.lax.scan``, so compile time does not grow with
    depth.

    Args:
      num_layers: how many layers (at least 1).
      unroll: as in ``jax.lax.scan``.

    Returns:
      A decorator.

    Example::

      def f(x):
        block = mh.lifted.layer_stack(12)(lambda x: x + jnp.tanh(MyLinear(64)(x)))
        return block(x)       # param '~/MyLinear_0/__call__/w' of shape [12, 64, 64]
    """
    if not isinstance(num_layers, int) or num_layers < 1:
        raise errors.MiniHaikuError(
            f"mh.lifted.layer_stack(num_layers={num_layers!r}): num_layers must be "
            "an int >= 1.")

    def decorator(f: Callable) -> Callable:
        @functools.wraps(f)
        def stacked(x, *args, **kwargs):
            lift = _frames.Lift("mh.lifted.layer_stack", "jax.lax.scan")
            key = lift.draw_key()
            keys = None if key is None else jax.random.split(key, num_layers)
            if lift.is_init:
                return _init(lift, f, x, args, kwargs, keys, unroll, num_layers)
            return _apply(lift, f, x, args, kwargs, keys, unroll, num_layers)

        return stacked

    return decorator


def _init(lift, f, x, args, kwargs, keys, unroll, num_layers):
    def layer(x, key):
        x, inner = lift.run(f, (x,) + args, kwargs, {}, {}, key)
        return x, (_frames.created(inner.params), _frames.created(inner.initial_state),
                   _frames.created(inner.state))

    x, (params, initial_state, state) = _eager_cache.run_transform(
        lambda x, keys: jax.lax.scan(layer, x, keys, length=num_layers, unroll=unroll),
        x, keys)
    outer = lift.outer
    clash = [p for p in list(params) + list(initial_state) if p in outer.params
             or p in outer.state]
    if clash:
        raise errors.MiniHaikuError(
            f"mh.lifted.layer_stack: {clash} already exist outside the stack, but "
            "every param and state entry used inside a layer_stack is per-layer. "
            "Fix: build the modules used in the stacked function inside it, or "
            "call them outside the stack.")
    lift.commit(params, state, initial_state)
    return x


def _apply(lift, f, x, args, kwargs, keys, unroll, num_layers):
    outer = lift.outer
    # Which paths belong to the stack is only known once the body runs, so
    # every entry with a leading axis of num_layers is offered, sliced; the
    # ones the body does not read are dead code for XLA.
    params = _per_layer(outer.params, num_layers)
    state = _per_layer(outer.state, num_layers)

    def layer(x, layer_xs):
        params, state, key = layer_xs
        x, inner = lift.run(f, (x,) + args, kwargs, params, state, key)
        _frames.check_state_kept(lift, state, inner.state)
        changed = {p: v for p, v in inner.state.items() if v is not state[p]}
        return x, changed

    x, changed = _eager_cache.run_transform(
        lambda x, xs: jax.lax.scan(layer, x, xs, length=num_layers, unroll=unroll),
        x, (params, state, keys))
    lift.commit(state=changed)
    return x


def _per_layer(values, num_layers):
    return {p: v for p, v in values.items() if v.ndim and v.shape[0] == num_layers}
