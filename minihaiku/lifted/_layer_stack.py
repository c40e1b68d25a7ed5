"""``layer_stack``: n layers with stacked params and state, run as one scan."""

import functools
import operator
from collections.abc import Callable

import jax
import numpy as np

from minihaiku import errors
from minihaiku.lifted import _eager_cache, _keys, _lift, _stacked


def layer_stack(num_layers: int, *, unroll: int = 1, reverse: bool = False,
                with_per_layer_inputs: bool = False) -> Callable[[Callable], Callable]:
    """Decorator applying ``f`` ``num_layers`` times, each layer with its own params and state.

    ``layer_stack(n)(f)(x, *args, **kwargs)`` computes ``x = f(x, *args,
    **kwargs)`` n times (the extra arguments go to every layer). Every param
    and state entry ``f`` touches is per-layer: it is stored at the path it
    would have without the stack, with a leading axis of size n, and layer i
    uses slice i. Each layer is initialised from its own key. Both init and
    apply compile as one ``jax.lax.scan``, so compile time does not grow with
    depth. Entries that already exist (a module called twice, or an enclosing
    lifted op's init pass) are reused, as everywhere else.

    Args:
      num_layers: how many layers (an int >= 1).
      unroll: as in ``jax.lax.scan``.
      reverse: run layer n-1 first (layer i still uses slice i).
      with_per_layer_inputs: Haiku's form: ``f(x, *ys_i, **kwargs) -> (x,
        z_i)``; the positional arguments after ``x`` are stacked (leading
        axis n, layer i gets slice i) and the stacked ``z`` is returned with
        the final ``x``: ``stacked(x, *ys) -> (x, zs)``.

    Returns:
      A decorator.

    Example::

      def f(x):
        block = mh.lifted.layer_stack(12)(lambda x: x + jnp.tanh(MyLinear(64)(x)))
        return block(x)       # param '~/MyLinear_0/__call__/w' of shape [12, 64, 64]
    """
    if isinstance(num_layers, (bool, np.bool_)):
        raise errors.InvalidArgumentError(
            f"mh.lifted.layer_stack(num_layers={num_layers!r}): num_layers must be an "
            "int >= 1, not a bool. Fix: pass the number of layers, e.g. layer_stack(12).")
    try:
        num_layers = operator.index(num_layers)
    except TypeError:
        raise errors.InvalidArgumentError(
            f"mh.lifted.layer_stack(num_layers={num_layers!r}): num_layers must be an "
            f"int >= 1, got {type(num_layers).__name__}. Fix: pass a Python or numpy "
            "integer, e.g. layer_stack(12).") from None
    if num_layers < 1:
        raise errors.InvalidArgumentError(
            f"mh.lifted.layer_stack(num_layers={num_layers}): num_layers must be >= 1.")
    scan = functools.partial(_stack, num_layers=num_layers, unroll=unroll, reverse=reverse,
                             per_layer_inputs=with_per_layer_inputs)

    def decorator(f: Callable) -> Callable:
        @functools.wraps(f)
        def stacked(x, *args, **kwargs):
            lift = _lift.Lift("mh.lifted.layer_stack", "jax.lax.scan")
            key = lift.draw_key()
            keys = _keys.split_stacked(key, num_layers)
            return scan(lift, f, x, args, kwargs, keys)

        return stacked

    return decorator


def _stack(lift, f, x, args, kwargs, keys, *, num_layers, unroll, reverse, per_layer_inputs):
    """Scans ``f`` over the layers: init and apply alike.

    Entries that already exist with a leading axis of ``num_layers`` (made by
    an init pass of an enclosing lifted op, or by an earlier call of the same
    module) are offered to each layer as its slice and reused; entries the
    body creates (init) come out of the scan stacked.
    """
    outer = lift.outer
    where = (f"mh.lifted.layer_stack({num_layers})", "per-layer", "a stack of another depth",
             "init and apply with the same num_layers")
    params = _stacked.leading(outer.params, num_layers)
    state = _stacked.leading(outer.state, num_layers)
    if per_layer_inputs:
        _check_per_layer_inputs(args, num_layers)

    def layer(x_in, layer_xs):
        params, state, key, ys = layer_xs
        x, inner = lift.run(f, (x_in,) + (ys if per_layer_inputs else args), kwargs,
                            _stacked.Slices(params, outer.params, num_layers, where),
                            _stacked.Slices(state, outer.state, num_layers, where), key,
                            owned=True)
        if per_layer_inputs:
            x, z = _split_output(x)
        else:
            z = None
        _check_carry(x_in, x, num_layers)
        _lift.check_state_kept(lift, state, inner.state)
        changed = {p: inner.state[p] for p, v in state.items() if inner.state[p] is not v}
        new = _lift.created(inner.state, state)
        return x, (changed, _lift.created(inner.params, params),
                   _lift.created(inner.initial_state, state), new, z)

    x, (changed, new_params, initial_state, new_state, zs) = _eager_cache.run_transform(
        lambda x, xs: jax.lax.scan(layer, x, xs, length=num_layers, unroll=unroll,
                                   reverse=reverse),
        x, (params, state, keys, args if per_layer_inputs else ()))
    _stacked.check_created(list(new_params) + list(new_state), {**outer.params, **outer.state},
                           num_layers, where)
    lift.commit(new_params, {**changed, **new_state}, initial_state)
    return (x, zs) if per_layer_inputs else x


def _check_per_layer_inputs(args, num_layers):
    for i, arg in enumerate(args):
        for leaf in jax.tree_util.tree_leaves(arg):
            shape = np.shape(leaf)
            if not shape or shape[0] != num_layers:
                raise errors.InvalidArgumentError(
                    f"mh.lifted.layer_stack({num_layers}, with_per_layer_inputs=True): "
                    f"per-layer input {i + 1} (after x) has a leaf of shape {shape}; every "
                    f"per-layer input needs a leading axis of num_layers={num_layers}. "
                    "Fix: stack the inputs per layer, or pass shared values as keyword "
                    "arguments.")


def _check_carry(x_in, x_out, num_layers):
    """Refuses a layer whose output cannot be the next layer's input (before JAX does)."""
    def types(tree):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        return treedef, [(np.shape(v), jax.numpy.result_type(v)) for v in leaves]

    (tree_in, leaves_in), (tree_out, leaves_out) = types(x_in), types(x_out)
    if tree_in == tree_out and leaves_in == leaves_out:
        return
    hint = ""
    if isinstance(x_out, tuple) and len(x_out) == 2 and types(x_out[0]) == types(x_in):
        hint = (" It returned a pair whose first item fits: to also return a per-layer "
                "output, use layer_stack(n, with_per_layer_inputs=True), whose layer "
                "returns (x, z) and which returns (x, stacked zs).")
    raise errors.LiftedBodyError(
        f"mh.lifted.layer_stack({num_layers}): each layer's output is the next layer's "
        f"input, so it must have the input's structure, shapes and dtypes: got "
        f"{tree_in} {leaves_in} in and {tree_out} {leaves_out} out.{hint} Fix: return "
        "an x like the one the layer was given (cast with .astype if only the dtype "
        "differs).")


def _split_output(out):
    if not (isinstance(out, tuple) and len(out) == 2):
        raise errors.LiftedBodyError(
            "mh.lifted.layer_stack(with_per_layer_inputs=True): the layer must return "
            f"(x, z), a pair; it returned {type(out).__name__}"
            f"{f' of length {len(out)}' if isinstance(out, tuple) else ''}. Fix: return "
            "the next x and this layer's output, e.g. `return x, z` (z may be None).")
    return out
