"""``summary``: a table of a network's params, computed from shapes alone.

``init`` is traced with ``jax.eval_shape``, so no param is created and no
layer runs: a summary of a network too big for memory is as quick as one of a
small network.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from minihaiku import _transform as transform_lib
from minihaiku import errors
from minihaiku._units import bytes_text
from minihaiku.init_shapes import init_shapes

# `fn(tree, rules, mesh, axes) -> {path: NamedSharding}`, registered by
# mh.sharding (a feature registers with the tool, never the other way round).
_PLACEMENT: list = [None]


def register_placement(fn: Callable) -> None:
    """Lets ``mh.summary(..., mesh=, rules=)`` place each entry with ``fn``."""
    _PLACEMENT[0] = fn


_COLUMNS = ("Module", "Method", "Name", "Kind", "Shape", "Dtype", "Count", "Bytes",
            "Spec", "Per device")
_RIGHT_ALIGNED = ("Count", "Bytes", "Per device")


def summary(f: transform_lib.Transformed | transform_lib.TransformedWithState
            | Callable[..., Any], *args: Any, mesh: Mesh | None = None,
            rules: Any = None,
            **kwargs: Any) -> str:
    """A table of the params (and state) ``f`` creates for inputs ``args``.

    One row per array: the module that owns it, the method that created it,
    its name, shape, dtype, number of elements and bytes; then the totals.
    Rows of one module method are adjacent, in creation order. Nothing is
    computed: ``init`` runs under ``jax.eval_shape``. Given a ``mesh``, each
    row also shows its ``PartitionSpec`` under ``rules`` (as in
    ``mh.sharding.specs``; no rules: replicated) and the bytes one device
    holds, and the totals add the bytes per device.

    Args:
      f: a ``Transformed``, a ``TransformedWithState``, or a plain function
        using minihaiku modules (it is transformed here).
      *args: the inputs of ``f``: arrays or ``jax.ShapeDtypeStruct``s. Other
        values (flags, Python numbers) are passed as they are.
      mesh: optional ``jax.sharding.Mesh`` to report per-device bytes on.
      rules: sharding rules (needs ``mesh``), as in ``mh.sharding.specs``.
      **kwargs: keyword inputs of ``f``, treated like ``args``.

    Returns:
      The table, as a string ready to print.

    Example::

      f = mh.transform(lambda x: mh.nn.MLP([128, 1])(x))
      print(mh.summary(f, jax.ShapeDtypeStruct((8, 1), jnp.float32)))
    """
    init = _init_fn(f)
    if rules is not None and mesh is None:
        raise errors.InvalidArgumentError(
            "mh.summary: rules were given without a mesh. Fix: pass mesh=..., e.g. "
            "jax.make_mesh((n,), ('data',)), to see the bytes per device.")
    out, axes = init_shapes(init, (jax.random.PRNGKey(0),) + args, kwargs)
    params, state = out if isinstance(out, tuple) else (out, {})
    placed = None
    if mesh is not None:
        rules = [] if rules is None else rules
        place = _PLACEMENT[0]
        if place is None:
            raise errors.InvalidArgumentError(
                "mh.summary(..., mesh=...): no sharding feature is registered. Fix: "
                "import minihaiku.sharding (import minihaiku does).")
        placed = {**place(params, rules, mesh, axes), **place(state, rules, mesh, axes)}
    return _table(params, state, placed)


def _init_fn(f: object) -> Callable:
    if isinstance(f, (transform_lib.Transformed, transform_lib.TransformedWithState)):
        return f.init
    if not callable(f):
        raise errors.InvalidArgumentError(
            f"mh.summary: the first argument must be the function to summarise (a "
            f"function, or the result of mh.transform), got {type(f).__name__} "
            f"{f!r}. Fix: mh.summary(f, *inputs).")
    return transform_lib.transform_with_state(f).init


def _split_path(path: str) -> tuple:
    """``~/MLP_0/__call__/Linear_0/__call__/w`` -> ``(~/MLP_0/__call__/Linear_0, __call__, w)``.

    Code outside any module method (e.g. ``~/w``) has method ``""``.
    """
    scope, _, name = path.rpartition("/")
    owner, _, method = scope.rpartition("/")
    if not owner:
        return scope, "", name
    return owner, method, name


def _table(params: dict, state: dict, placed: dict | None) -> str:
    entries = [("param", k, v) for k, v in params.items()]
    entries += [("state", k, v) for k, v in state.items()]
    # Group by (module, method), keeping groups and rows in creation order.
    groups: dict = {}
    for kind, path, value in entries:
        module, method, name = _split_path(path)
        groups.setdefault((module, method), []).append((kind, name, value))
    rows = []
    for (module, method), items in groups.items():
        for i, (kind, name, value) in enumerate(items):
            rows.append({
                "Module": module if i == 0 else "", "Method": method if i == 0 else "",
                "Name": name, "Kind": kind, "Shape": str(tuple(value.shape)),
                "Dtype": str(value.dtype),
                "Count": f"{_count(value):,}", "Bytes": bytes_text(_nbytes(value)),
                **_placement(value, placed and placed[_join(module, method, name)])})
    columns = [c for c in _COLUMNS if (c != "Kind" or state)
               and (placed is not None or c not in ("Spec", "Per device"))]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}

    def line(cells):
        return "  ".join(cells[c].rjust(widths[c]) if c in _RIGHT_ALIGNED
                         else cells[c].ljust(widths[c]) for c in columns).rstrip()

    lines = [line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})]
    lines += [line(r) for r in rows]
    lines.append(_total("params", params, placed))
    if state:
        lines.append(_total("state", state, placed))
    return "\n".join(lines)


def _join(module: str, method: str, name: str) -> str:
    return "/".join(p for p in (module, method, name) if p)


def _placement(value: Any, sharding: Any) -> dict:
    if sharding is None:
        return {}
    spec = str(tuple(sharding.spec))
    return {"Spec": spec, "Per device": bytes_text(_device_bytes(value, sharding))}


def _device_bytes(value: Any, sharding: Any) -> int:
    # Rules refuse uneven splits, so every device holds a shard of this shape.
    shard = sharding.shard_shape(tuple(value.shape))
    return int(np.prod(shard, dtype=np.int64)) * value.dtype.itemsize


def _count(value: Any) -> int:
    return int(np.prod(value.shape, dtype=np.int64))


def _nbytes(value: Any) -> int:
    # ``value.dtype.itemsize``, not ``np.dtype``: typed PRNG keys are no numpy dtype.
    return _count(value) * value.dtype.itemsize


def _total(kind: str, tree: dict, placed: dict | None) -> str:
    count = sum(_count(v) for v in tree.values())
    size = sum(_nbytes(v) for v in tree.values())
    arrays = "array" if len(tree) == 1 else "arrays"
    line = f"Total {kind}: {count:,} ({bytes_text(size)}) in {len(tree)} {arrays}"
    if placed is None:
        return line
    per_device = sum(_device_bytes(v, placed[k]) for k, v in tree.items())
    return f"{line}, {bytes_text(per_device)} per device"
