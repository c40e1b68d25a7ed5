"""``init``: create params (and state) directly sharded; ``logical_axes``."""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.sharding import Mesh

from minihaiku import errors
from minihaiku.init_shapes import in_order, init_shapes, split_static
from minihaiku.sharding import rules as rules_lib


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
    return init_shapes(init_fn, args, kwargs)[1]


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
        shapes, axes = init_shapes(init_fn, args, kwargs)
        out_shardings = _out_shardings(shapes, rules, mesh, axes)
        arrays, rebuild = split_static(args, kwargs)

        def run(arrays):
            a, kw = rebuild(arrays)
            return init_fn(*a, **kw)

        out = jax.jit(run, out_shardings=out_shardings)(arrays)
        order = jax.tree_util.tree_map(list, shapes, is_leaf=lambda d: isinstance(d, dict))
        return in_order(out, order)

    return sharded_init
