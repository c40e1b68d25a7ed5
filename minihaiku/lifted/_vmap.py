"""``vmap``: ``jax.vmap`` inside a transform, params broadcast."""

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from minihaiku import errors
from minihaiku.lifted import _eager_cache, _ensemble, _keys, _lift

# next() on a count is atomic, so threads building vmaps get distinct names.
_AXIS_IDS = itertools.count()


def vmap(f: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0,
         axis_size: int | None = None, *, split_rng: bool,
         params_axis: int | None = None) -> Callable[..., Any]:
    """``jax.vmap`` of ``f``, which may use params, state and keys.

    Params are shared by all examples (broadcast, never mapped). State is
    shared too: ``f`` may read it, and may set it only to values that do not
    depend on the example. With ``split_rng=True`` every example draws its own
    keys, in init as in apply (params are still created once, from keys
    shared by all examples); with ``split_rng=False`` all examples draw the
    same keys.

    Args:
      f: the function to map.
      in_axes: as in ``jax.vmap``, for ``f``'s positional arguments (keyword
        arguments are mapped over axis 0, as in ``jax.vmap``).
      out_axes: as in ``jax.vmap``.
      axis_size: as in ``jax.vmap``.
      split_rng: whether each example gets different keys (keyword only, no
        default: choosing is part of the model).
      params_axis: ``None`` (params shared) or ``0``: an ensemble. Every param
        and state entry used inside is stacked with a leading axis of the
        mapped size, member i uses slice i, and in init each member is
        initialised from its own key.

    Returns:
      The mapped function.

    Example::

      def f(xs):                  # per-example dropout, one shared Linear
        net = lambda x: mh.nn.dropout(0.1, MyLinear(3)(x))
        return mh.lifted.vmap(net, split_rng=True)(xs)
    """
    if params_axis not in (None, 0):
        raise errors.InvalidArgumentError(
            f"mh.lifted.vmap(params_axis={params_axis!r}): params_axis must be None "
            "(params shared) or 0 (an ensemble: params stacked on a leading axis).")
    axis_name = f"mh_lifted_vmap_{next(_AXIS_IDS)}"

    @functools.wraps(f)
    def mapped(*args, **kwargs):
        lift = _lift.Lift("mh.lifted.vmap", "jax.vmap")
        outer = lift.outer
        axes = _axes(in_axes, args)
        if params_axis == 0:
            return _ensemble.run(lift, f, args, kwargs, axes, out_axes, axis_size, axis_name,
                                 split_rng)

        def run(state, key, split):
            def body(state, key, *args, **kwargs):
                if split and _keys.is_key(key):
                    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
                out, inner = lift.run(f, args, kwargs, outer.params, state, key)
                return (out, _lift.created(inner.params, outer.params), inner.state,
                        _lift.created(inner.initial_state))

            def vmapped(state, key, args, kwargs, shared=(None, None, None)):
                return jax.vmap(body, in_axes=(None, None) + axes,
                                out_axes=(out_axes,) + shared,
                                axis_size=axis_size, axis_name=axis_name)(
                                    state, key, *args, **kwargs)

            try:
                return _eager_cache.run_transform(vmapped, state, key, args, kwargs)
            except ValueError:
                # Our own analysis, not JAX's message, decides what went wrong.
                bad = _per_example(vmapped, state, key, args, kwargs)
                if not bad:
                    raise
                raise errors.LiftedBodyError(
                    f"mh.lifted.vmap: {bad} created or set inside the mapped function "
                    "depend on the mapped axis, but params and state are shared by all "
                    "examples. Fix: compute the value outside mh.lifted.vmap, "
                    "or reduce over the batch (e.g. mean) before mh.set_state."
                ) from None

        _check_sizes(args, kwargs, axes, axis_size)
        key = lift.draw_key()
        if split_rng:
            shared_key, key = _keys.split_carried_key(key)
        if outer.is_init and split_rng:
            # Params come from keys shared by all examples; the outputs from
            # a second run where each example has its own keys.
            _, params, _, initial_state = run(dict(outer.state), shared_key, False)
            lift.commit(params, {}, initial_state)
            state = {**outer.state, **initial_state}
        else:
            state = dict(outer.state)  # crosses jax.vmap as an input
        out, params, state, initial_state = run(state, key, split_rng)
        lift.commit(params, state, initial_state)
        return out

    return mapped


def _per_example(vmapped: Callable, state: Any, key: Any, args: Sequence, kwargs: Mapping) -> list:
    """The param/state paths whose values depend on the mapped axis.

    Only on the error path: tries each path alone as "shared" (out_axes None)
    under ``jax.eval_shape``, everything else mapped.
    """
    shapes = jax.eval_shape(lambda *a: vmapped(*a, shared=(0, 0, 0)), state, key, args, kwargs)
    bad = []
    for i, outputs in enumerate(shapes[1:]):
        for path in outputs:
            shared = [0, 0, 0]
            shared[i] = type(outputs)((p, None if p == path else 0) for p in outputs)
            try:
                jax.eval_shape(lambda *a, shared=tuple(shared): vmapped(*a, shared=shared),
                               state, key, args, kwargs)
            except ValueError:
                if path not in bad:
                    bad.append(path)
    return bad


def _axes(in_axes: Any, args: Sequence) -> tuple:
    """One in_axes entry per positional argument the user passed, or a clear error."""
    if not isinstance(in_axes, (tuple, list)):
        return (in_axes,) * len(args)
    if len(in_axes) != len(args):
        raise errors.InvalidArgumentError(
            f"mh.lifted.vmap: in_axes={tuple(in_axes)!r} has {len(in_axes)} entries, but "
            f"the mapped function was called with {len(args)} positional argument(s). "
            "Fix: give one in_axes entry per positional argument (None for one that is "
            "not mapped); keyword arguments are mapped over axis 0.")
    return tuple(in_axes)


def _check_sizes(args: Sequence, kwargs: Mapping, axes: Any, axis_size: Any) -> None:
    """Refuses mapped arguments of different sizes before ``jax.vmap`` sees them."""
    found = set() if axis_size is None else {axis_size}
    for arg, axis in [*zip(args, axes, strict=True), *((v, 0) for v in kwargs.values())]:
        if axis is None:
            continue
        for leaf in jax.tree_util.tree_leaves(arg):
            shape = jax.numpy.shape(leaf)
            found.add(shape[axis] if -len(shape) <= axis < len(shape) else None)
    if len(found) > 1:
        raise _size_error(args, kwargs, axes, axis_size)


def _size_error(args: Sequence, kwargs: Mapping, axes: Any,
                axis_size: Any) -> errors.InvalidArgumentError:
    """Names each mapped argument's size (only on the error path)."""
    sizes = []
    for what, arg, axis in ([(f"argument {i}", a, ax) for i, (a, ax) in enumerate(
            zip(args, axes, strict=True))] + [(f"keyword '{k}'", v, 0)
                                             for k, v in kwargs.items()]):
        if axis is None:
            continue
        for leaf in jax.tree_util.tree_leaves(arg):
            shape = jax.numpy.shape(leaf)
            size = shape[axis] if -len(shape) <= axis < len(shape) else "no such axis"
            sizes.append(f"{what}: shape {shape}, size {size} along axis {axis}")
    given = "" if axis_size is None else f" (axis_size={axis_size})"
    return errors.InvalidArgumentError(
        f"mh.lifted.vmap: the mapped arguments disagree on the batch size{given}: "
        f"{'; '.join(sizes)}. Fix: give every mapped argument the same size along its "
        "in_axes entry, or mark an argument that is not batched with in_axes=None.")
