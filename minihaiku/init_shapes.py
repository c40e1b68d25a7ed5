"""What ``init`` would make, from shapes alone: ``mh.summary`` and ``mh.sharding`` use it.

``init`` is traced with ``jax.eval_shape``, so no param is created and no
layer runs; the logical axes params were created with come from the run's
frame (creation metadata the core keeps), not from a side channel.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from minihaiku import errors
from minihaiku import frame as frame_lib

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


def init_shapes(init_fn: Callable, args: tuple, kwargs: dict) -> tuple:
    """``(shapes of init's output, path -> logical axes)``, computing nothing.

    ``init_fn`` runs under ``jax.eval_shape``; the logical axes are the
    creation metadata its run recorded (``get_param(..., axes=...)``).

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

    with frame_lib.observing() as runs:
        shapes = jax.eval_shape(run, arrays)
    axes = {path: a for r in runs for path, a in r.axes.items()}
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
