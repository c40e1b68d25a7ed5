"""``summary``: a table of a network's params, computed from shapes alone.

``init`` is traced with ``jax.eval_shape``, so no param is created and no
layer runs: a summary of a network too big for memory is as quick as one of a
small network.
"""

from typing import Any, Callable, Union

import jax
import numpy as np

from minihaiku import transform as transform_lib

_COLUMNS = ("Module", "Method", "Name", "Kind", "Shape", "Dtype", "Count", "Bytes")
_RIGHT_ALIGNED = ("Count", "Bytes")


def summary(f: Union[transform_lib.Transformed, transform_lib.TransformedWithState,
                     Callable[..., Any]], *args, **kwargs) -> str:
    """A table of the params (and state) ``f`` creates for inputs ``args``.

    One row per array: the module that owns it, the method that created it,
    its name, shape, dtype, number of elements and bytes; then the totals.
    Rows of one module method are adjacent, in creation order. Nothing is
    computed: ``init`` runs under ``jax.eval_shape``.

    Args:
      f: a ``Transformed``, a ``TransformedWithState``, or a plain function
        using minihaiku modules (it is transformed here).
      *args: the inputs of ``f``: arrays or ``jax.ShapeDtypeStruct``s. Other
        values (flags, Python numbers) are passed as they are.
      **kwargs: keyword inputs of ``f``, treated like ``args``.

    Returns:
      The table, as a string ready to print.

    Example::

      f = mh.transform(lambda x: mh.nn.MLP([128, 1])(x))
      print(mh.summary(f, jax.ShapeDtypeStruct((8, 1), jnp.float32)))
    """
    init = _init_fn(f)
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    traced = [isinstance(leaf, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)) for leaf in leaves]

    orders = []

    def run(key, arrays):
        it = iter(arrays)
        a, kw = treedef.unflatten([next(it) if t else leaf for leaf, t in zip(leaves, traced)])
        out = init(key, *a, **kw)
        # eval_shape's output dicts come back with sorted keys; keep creation order.
        orders.extend(list(d) for d in (out if isinstance(out, tuple) else (out,)))
        return out

    arrays = [leaf for leaf, t in zip(leaves, traced) if t]
    out = jax.eval_shape(run, jax.random.PRNGKey(0), arrays)
    trees = [{k: d[k] for k in order} for d, order in
             zip(out if isinstance(out, tuple) else (out,), orders)]
    return _table(trees[0], trees[1] if len(trees) > 1 else {})


def _init_fn(f) -> Callable:
    if isinstance(f, (transform_lib.Transformed, transform_lib.TransformedWithState)):
        return f.init
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


def _table(params: dict, state: dict) -> str:
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
                "Dtype": np.dtype(value.dtype).name,
                "Count": f"{_count(value):,}", "Bytes": _bytes(_nbytes(value))})
    columns = [c for c in _COLUMNS if c != "Kind" or state]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}

    def line(cells):
        return "  ".join(cells[c].rjust(widths[c]) if c in _RIGHT_ALIGNED
                         else cells[c].ljust(widths[c]) for c in columns).rstrip()

    lines = [line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})]
    lines += [line(r) for r in rows]
    lines.append(_total("params", params))
    if state:
        lines.append(_total("state", state))
    return "\n".join(lines)


def _count(value) -> int:
    return int(np.prod(value.shape, dtype=np.int64))


def _nbytes(value) -> int:
    return _count(value) * np.dtype(value.dtype).itemsize


def _total(kind: str, tree: dict) -> str:
    count = sum(_count(v) for v in tree.values())
    size = sum(_nbytes(v) for v in tree.values())
    arrays = "array" if len(tree) == 1 else "arrays"
    return f"Total {kind}: {count:,} ({_bytes(size)}) in {len(tree)} {arrays}"


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
