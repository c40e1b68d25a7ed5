"""The pytree side of ``mh.io``: leaves to storable arrays, and back into a tree.

A saved tree is its leaves, each named by its ``jax.tree_util.keystr`` path,
plus a JSON *skeleton* of its structure: ``{"dict": [[key, child], ...]}``,
``{"list": [...]}``, ``{"tuple": [...]}``, ``null`` for ``None``, an int for
the leaf stored at that index, and ``{"node": type, "path": path}`` for any
other node (a NamedTuple, a dataclass...), which cannot be rebuilt without
``like`` because the file does not name Python classes to import.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import errors

_tu = jax.tree_util
_PY_SCALARS = (bool, int, float, complex)


def flatten(tree: Any, name: str) -> tuple[list[tuple[str, np.ndarray]], Any]:
    """``[(path, host array)]`` and the skeleton; refuses what cannot be stored."""
    try:
        with_paths = _tu.tree_flatten_with_path(tree)[0]
    except Exception as e:  # noqa: BLE001  (e.g. dict keys that do not sort)
        raise errors.CheckpointError(
            f"mh.io.save('{name}'): the tree cannot be flattened: {e}. Fix: save a "
            "pytree of arrays such as the params dict from init.") from e
    leaves: list[tuple[str, np.ndarray]] = []
    index: dict[str, int] = {}
    for key_path, leaf in with_paths:
        path = _tu.keystr(key_path)
        if path in index:
            raise errors.CheckpointError(
                f"mh.io.save('{name}'): two leaves have the path {path}. Fix: give "
                "them distinct keys.")
        index[path] = len(leaves)
        leaves.append((path, _host_array(leaf, path, name)))
    return leaves, _skeleton(tree, (), index)


def _host_array(leaf: Any, path: str, name: str) -> np.ndarray:
    where = f"mh.io.save('{name}'): {path or 'the tree'}"
    if isinstance(leaf, jax.core.Tracer):
        raise errors.CheckpointError(
            f"{where} is a tracer ({type(leaf).__name__}), not an array. Fix: call "
            "mh.io.save outside jax.jit and other transforms, on the concrete arrays.")
    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise errors.CheckpointError(
                f"{where} is a typed PRNG key array, which has no file format. Fix: save "
                "jax.random.key_data(key) and rebuild it with jax.random.wrap_key_data.")
        if not leaf.is_fully_addressable:
            raise errors.CheckpointError(
                f"{where} is spread over several hosts. Fix: save sharded trees with "
                "orbax-checkpoint from every host (mh.io writes one file from one host).")
    if isinstance(leaf, jax.ShapeDtypeStruct):
        raise errors.CheckpointError(
            f"{where} is a jax.ShapeDtypeStruct, which has no values. Fix: save the "
            "arrays themselves (e.g. from init, not jax.eval_shape).")
    try:
        # Python scalars get the dtype JAX gives them, as in jax.eval_shape's `like`.
        value = np.asarray(jnp.asarray(leaf) if type(leaf) in _PY_SCALARS else leaf)
    except Exception as e:  # noqa: BLE001  (any conversion failure gets the path)
        raise errors.CheckpointError(
            f"{where} ({type(leaf).__name__}) is not an array: {e}. Fix: save only "
            "arrays, outside jit.") from e
    if not _storable_dtype(value.dtype):
        raise errors.CheckpointError(
            f"{where} ({type(leaf).__name__}) has dtype {value.dtype}, which cannot be "
            "stored without pickle. Fix: save only numeric or bool arrays (keep strings "
            "and other Python values out of the tree).")
    return value


def _storable_dtype(dtype: np.dtype) -> bool:
    if dtype == jax.dtypes.float0 or (dtype.kind in "biufc" and is_native(dtype)):
        return True
    # ml_dtypes (bfloat16, float8_*, int4, ...): unstructured, known to jnp.
    if is_native(dtype) or dtype.fields is not None or dtype.itemsize not in (1, 2, 4, 8):
        return False
    try:
        return jnp.dtype(dtype.name) == dtype
    except TypeError:
        return False


def is_native(dtype: np.dtype) -> bool:
    """Whether numpy's ``.npy`` format reads the dtype back by itself.

    ml_dtypes' dtypes are not (``float8_e5m2`` even claims kind ``'f'`` and
    is written as ``'<f1'``, which numpy cannot read back).
    """
    try:
        return np.dtype(dtype.str) == dtype
    except TypeError:
        return False


def _skeleton(node: Any, key_path: tuple, index: dict) -> Any:
    if node is None:
        return None
    if type(node) is dict and all(type(k) in (str, int) for k in node):
        return {"dict": [[k, _skeleton(v, key_path + (_tu.DictKey(k),), index)]
                         for k, v in node.items()]}
    if type(node) in (list, tuple):
        return {type(node).__name__: [_skeleton(v, key_path + (_tu.SequenceKey(i),), index)
                                      for i, v in enumerate(node)]}
    path = _tu.keystr(key_path)
    if _tu.all_leaves([node]):  # Not an empty node such as optax.EmptyState().
        return index[path]
    return {"node": type(node).__name__, "path": path}


def dict_path(key: str) -> str:
    return _tu.keystr((_tu.DictKey(key),))


def flat_dict_skeleton(keys: list) -> dict:
    return {"dict": [[k, i] for i, k in enumerate(keys)]}


def rebuild(skeleton: Any, values: list, name: str) -> Any:
    """The saved tree from its skeleton, for ``load`` without ``like``."""
    used: set[int] = set()

    def build(s: Any) -> Any:
        if s is None:
            return None
        if isinstance(s, int) and not isinstance(s, bool) and 0 <= s < len(values):
            used.add(s)
            return values[s]
        if isinstance(s, dict) and len(s) == 1:
            (kind, children), = s.items()
            if kind == "dict":
                return {k: build(c) for k, c in children}
            if kind in ("list", "tuple"):
                return (list if kind == "list" else tuple)(build(c) for c in children)
        if isinstance(s, dict) and "node" in s:
            raise errors.CheckpointError(
                f"mh.io.load: '{name}' holds a {s['node']} at {s.get('path') or 'the root'}, "
                "which can be rebuilt only into the structure of `like`. Fix: pass like=, "
                "e.g. the train state from init or jax.eval_shape of it.")
        raise errors.CheckpointError(
            f"mh.io.load: '{name}' is truncated or corrupt: bad tree node {s!r} in its "
            "header. Fix: re-save it, or load an earlier checkpoint.")

    tree = build(skeleton)
    if len(used) != len(values):
        raise errors.CheckpointError(
            f"mh.io.load: '{name}' is truncated or corrupt: its tree uses {len(used)} of "
            f"{len(values)} entries. Fix: re-save it, or load an earlier checkpoint.")
    return tree


def like_paths(like: Any) -> list[str]:
    return [_tu.keystr(kp) for kp, _ in _tu.tree_flatten_with_path(like)[0]]


def match(paths: list[str], values: list, like: Any, name: str) -> tuple[Any, list, list, list]:
    """``like`` filled from the file, and what did not fit.

    Returns ``(tree, missing, unexpected, mismatched)``; leaves that did not
    fit keep ``like``'s leaf, ``mismatched`` is ``[(path, why)]``.
    """
    try:
        with_paths, treedef = _tu.tree_flatten_with_path(like)
    except Exception as e:  # noqa: BLE001
        raise errors.CheckpointError(
            f"mh.io.load('{name}'): `like` is not a pytree: {e}. Fix: pass the tree "
            "to restore into, e.g. jax.eval_shape(init, rng, x).") from e
    stored = dict(zip(paths, values, strict=True))
    out, missing, mismatched, wanted = [], [], [], set()
    for key_path, ref in with_paths:
        path = _tu.keystr(key_path)
        wanted.add(path)
        shape, dtype = _spec(ref, path, name)
        value = stored.get(path)
        if value is None:
            missing.append(path)
            out.append(ref)
        elif tuple(value.shape) != shape or value.dtype != dtype:
            mismatched.append((path, f"file has {describe(value)}, expected "
                                     f"{_name(dtype)}{shape}"))
            out.append(ref)
        else:
            out.append(value)
    unexpected = [p for p in paths if p not in wanted]
    return _tu.tree_unflatten(treedef, out), missing, unexpected, mismatched


def _spec(ref: Any, path: str, name: str) -> tuple[tuple, Any]:
    if hasattr(ref, "shape") and hasattr(ref, "dtype"):
        return tuple(ref.shape), ref.dtype
    try:
        value = np.asarray(jnp.asarray(ref) if type(ref) in _PY_SCALARS else ref)
    except Exception:  # noqa: BLE001
        value = np.asarray(None)
    if value.dtype.kind not in "biufc":
        raise errors.CheckpointError(
            f"mh.io.load('{name}'): `like` at {path} is a {type(ref).__name__}, not an "
            "array. Fix: give `like` arrays or jax.ShapeDtypeStruct leaves.")
    return value.shape, value.dtype


def describe(value: Any) -> str:
    return f"{_name(value.dtype)}{tuple(value.shape)}"


def _name(dtype: Any) -> str:
    return getattr(dtype, "name", str(dtype))
