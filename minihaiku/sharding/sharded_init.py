"""``init``: create params (and state) directly sharded; ``logical_axes``."""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from minihaiku import errors
from minihaiku.sharding import _collect
from minihaiku.sharding import rules as rules_lib

_ARRAY_TYPES = (jax.Array, np.ndarray, jax.ShapeDtypeStruct)


def split_static(args: tuple, kwargs: dict) -> tuple:
    """Splits ``(args, kwargs)`` into its array leaves and a function rebuilding them.

    Arrays (and ``ShapeDtypeStruct``s) become traced inputs; every other leaf
    (an int seed, a flag) stays a Python value, closed over.
    """
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    traced = [isinstance(leaf, _ARRAY_TYPES) for leaf in leaves]

    def rebuild(arrays):
        it = iter(arrays)
        return jax.tree_util.tree_unflatten(
            treedef, [next(it) if t else leaf for leaf, t in zip(leaves, traced, strict=True)])

    return [leaf for leaf, t in zip(leaves, traced, strict=True) if t], rebuild


def traced_init(init_fn: Callable, args: tuple, kwargs: dict) -> tuple:
    """``(shapes of init's output, path -> logical axes)``, computing nothing.

    The output dicts keep creation order (``jax.eval_shape`` sorts them).
    """
    if not callable(init_fn):
        raise errors.InvalidArgumentError(
            f"Expected the init function of mh.transform(f) (e.g. transformed.init), "
            f"got {type(init_fn).__name__}.")
    arrays, rebuild = split_static(args, kwargs)
    orders = []

    def run(arrays):
        a, kw = rebuild(arrays)
        out = init_fn(*a, **kw)
        orders.append(jax.tree_util.tree_map(lambda d: list(d), out, is_leaf=_is_dict))
        return out

    with _collect.collecting() as axes:
        shapes = jax.eval_shape(run, arrays)
    return in_order(shapes, orders[0]), axes


def _is_dict(x: Any) -> bool:
    return isinstance(x, dict)


def in_order(out, order):
    """``out`` with every dict's keys in the order ``order`` lists them."""
    if isinstance(out, dict):
        return {k: out[k] for k in order}
    if isinstance(out, tuple):
        return tuple(in_order(o, k) for o, k in zip(out, order, strict=True))
    return out


def logical_axes(init_fn: Callable, *args: Any, **kwargs: Any) -> dict:
    """Path -> logical axes of every param (and state) created with ``axes=...``.

    ``init_fn`` runs under ``jax.eval_shape``: nothing is computed.

    Args:
      init_fn: an ``init`` from ``mh.transform`` or ``mh.transform_with_state``.
      *args: its arguments (rng and inputs; arrays or ``ShapeDtypeStruct``s).
      **kwargs: its keyword arguments.

    Returns:
      path -> tuple of logical axis names, for the params declaring them.

    Example::

      axes = mh.sharding.logical_axes(f.init, rng, x)
    """
    return traced_init(init_fn, args, kwargs)[1]


def _out_shardings(shapes: Any, rules: rules_lib.Rules, mesh: Mesh, axes: Mapping) -> Any:
    if isinstance(shapes, Mapping):
        return rules_lib.shardings(shapes, rules, mesh, axes=axes)
    if (isinstance(shapes, tuple) and len(shapes) == 2
            and all(isinstance(t, Mapping) for t in shapes)):
        # transform_with_state: the state follows the same rules (a KV cache
        # may be sharded like activations); unmatched entries are replicated.
        return tuple(rules_lib.shardings(t, rules, mesh, axes=axes) for t in shapes)
    raise errors.InvalidArgumentError(
        "mh.sharding.init expects an init returning params (mh.transform) or "
        f"(params, state) (mh.transform_with_state), got {type(shapes).__name__}.")


def init(init_fn: Callable, rules: rules_lib.Rules, mesh: Mesh) -> Callable:
    """Wraps ``init_fn`` so every param is created directly sharded on ``mesh``.

    The returned function has ``init_fn``'s signature. It traces ``init_fn``
    with ``jax.eval_shape`` (collecting logical axes), computes each output's
    ``NamedSharding`` from ``rules``, then runs ``jax.jit(init_fn,
    out_shardings=...)``: each device creates only its shard, no host ever
    holds the whole model, and the values equal those of ``init_fn``.

    Args:
      init_fn: an ``init`` from ``mh.transform`` or ``mh.transform_with_state``.
      rules: as in :func:`specs`; state entries follow the same rules.
      mesh: the ``jax.sharding.Mesh`` to shard over.

    Returns:
      ``init(rng, *args, **kwargs)`` returning sharded params (and state).

    Example::

      mesh = mh.sharding.mesh("model:1")
      rules = [(r"/w$", P(None, "model"))]
      params = mh.sharding.init(f.init, rules, mesh)(jax.random.key(0), x)
    """
    if not isinstance(mesh, Mesh):
        raise errors.InvalidArgumentError(
            f"mh.sharding.init: mesh must be a jax.sharding.Mesh, got "
            f"{type(mesh).__name__}. Fix: mesh = mh.sharding.mesh('data:4,model:2').")
    rules_lib.checked_rules(rules)  # Fail now, not at the first call.

    @functools.wraps(init_fn)
    def sharded_init(*args, **kwargs):
        shapes, axes = traced_init(init_fn, args, kwargs)
        out_shardings = _out_shardings(shapes, rules, mesh, axes)
        arrays, rebuild = split_static(args, kwargs)

        def run(arrays):
            a, kw = rebuild(arrays)
            return init_fn(*a, **kw)

        out = jax.jit(run, out_shardings=out_shardings)(arrays)
        return in_order(out, jax.tree_util.tree_map(list, shapes, is_leaf=_is_dict))

    return sharded_init
