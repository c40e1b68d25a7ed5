"""``vmap(..., params_axis=0)``: ensembles, every member with its own params and state."""

from collections.abc import Mapping, Sequence
from typing import Any

import jax

from minihaiku import errors
from minihaiku.lifted import _eager_cache, _keys, _lift, _stacked


def run(lift, f, args, kwargs, axes, out_axes, axis_size, axis_name, split_rng):
    """Maps ``f`` with every param and state entry it uses stacked, one slice per member.

    Existing entries with a leading axis of the mapped size are sliced in;
    entries created inside come out stacked. In init every member draws its
    own keys (so its params differ); in apply only with ``split_rng``.
    """
    outer = lift.outer
    size = _size(args, kwargs, axes, axis_size)
    where = (f"mh.lifted.vmap(params_axis=0) over {size} members", "per-member",
             "an ensemble of another size", "init and apply with the same number of members")
    params = _stacked.leading(outer.params, size)
    state = _stacked.leading(outer.state, size)
    fold = split_rng or outer.is_init

    def member(params, state, key, *args, **kwargs):
        if fold and _keys.is_key(key):
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        out, inner = lift.run(f, args, kwargs, _stacked.Slices(params, outer.params, size, where),
                              _stacked.Slices(state, outer.state, size, where), key,
                              owned=True)
        changed = {p: inner.state[p] for p, v in state.items() if inner.state[p] is not v}
        return (out, _lift.created(inner.params, params), changed,
                _lift.created(inner.state, state), _lift.created(inner.initial_state, state))

    def mapped(params, state, key, args, kwargs):
        return jax.vmap(member, in_axes=(0, 0, None) + axes, out_axes=(out_axes, 0, 0, 0, 0),
                        axis_size=size, axis_name=axis_name)(params, state, key, *args, **kwargs)

    out, new_params, changed, new_state, initial_state = _eager_cache.run_transform(
        mapped, params, state, lift.draw_key(), args, kwargs)
    _stacked.check_created(list(new_params) + list(new_state), {**outer.params, **outer.state},
                           size, where)
    lift.commit(new_params, {**changed, **new_state}, initial_state)
    return out


def _size(args: Sequence, kwargs: Mapping, axes: Any, axis_size: Any) -> int:
    if axis_size is not None:
        return axis_size
    mapped = [(a, ax) for a, ax in zip(args, axes, strict=True) if ax is not None]
    mapped += [(v, 0) for v in kwargs.values()]
    for arg, axis in mapped:
        for leaf in jax.tree_util.tree_leaves(arg):
            return jax.numpy.shape(leaf)[axis]
    raise errors.InvalidArgumentError(
        "mh.lifted.vmap(params_axis=0): no argument is mapped, so the number of "
        "ensemble members is unknown. Fix: pass axis_size=<members>.")
