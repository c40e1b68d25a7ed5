"""``save``, ``load`` and ``load_partial``: a pytree of arrays in one ``.npz`` file.

The file is a zip of ``.npy`` entries named ``0.npy``, ``1.npy``, ... (one per
leaf) plus a header entry ``__minihaiku__.npy``: JSON naming each leaf's
``jax.tree_util.keystr`` path, dtype and shape, and the tree's structure when
it is made of dicts, lists, tuples and ``None``. Paths live only in the header,
so no key can alias another entry or the header. Dtypes numpy cannot store
(``bfloat16``, ``float8_*``, ``int4``, ...) are stored as their raw bits in an
unsigned int of the same width; ``float0`` leaves (gradients of int inputs)
are stored by shape alone. Format version 1 (entries named by dict key, flat
dicts only) is still read. The file is written atomically (see
``_atomic_file``).
"""

import json
import zipfile
from collections.abc import Sequence
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import _atomic_file, _io_tree, errors

CheckpointNotFoundError = errors.CheckpointNotFoundError

_HEADER = "__minihaiku__"
_FORMAT = "minihaiku.io"
_VERSION = 2


def save(path: _atomic_file.PathLike, tree: Any) -> None:
    """Saves a pytree of arrays (params, state, a whole train state) to ``path``.

    The file is written exactly at ``path`` (no suffix is added), atomically:
    a crash leaves the old file or the new one. Every leaf is checked before
    anything is written; values are copied to host memory with their dtypes.

    Args:
      path: where to write (str, bytes or ``os.PathLike``). A symlink writes
        the file it points to.
      tree: any pytree of arrays: the params dict from ``init``, or e.g.
        ``{"params": params, "opt_state": opt_state, "step": step}``.

    Raises:
      CheckpointError: a leaf that is not a numeric or bool array (strings,
        objects, typed PRNG keys, arrays spread over several hosts).
      OSError: the file cannot be written (the message names ``path``).

    Example::

      >>> params = {"~/Linear_0/__call__/w": jnp.ones((2, 3))}
      >>> mh.io.save("/tmp/params.npz", params)
      >>> mh.io.load("/tmp/params.npz")["~/Linear_0/__call__/w"].shape
      (2, 3)
    """
    name = _atomic_file.as_str(path, "mh.io.save")
    leaves, skeleton = _io_tree.flatten(tree, name)
    header = {"format": _FORMAT, "version": _VERSION, "tree": skeleton,
              "entries": [[p, _dtype_name(a.dtype), list(a.shape)] for p, a in leaves]}

    def write_to(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            _write_entry(zf, _HEADER, np.frombuffer(json.dumps(header).encode(), np.uint8))
            for i, (_, value) in enumerate(leaves):
                _write_entry(zf, str(i), _storable(value))

    _atomic_file.write(name, write_to)


def load(path: _atomic_file.PathLike, like: Any = None) -> Any:
    """Loads a file written by :func:`save`.

    Leaves come back as host ``numpy`` arrays with the saved dtypes
    (``bfloat16`` as ``ml_dtypes.bfloat16``); pass them to ``apply`` or place
    them with ``jax.device_put``.

    Args:
      path: a file written by :func:`save`.
      like: optional tree the file must match, with arrays or
        ``jax.ShapeDtypeStruct`` leaves (e.g. ``jax.eval_shape(init, rng,
        x)``); the result has its structure (dicts in the sorted key order
        ``jax.tree.map`` gives them). Needed when the saved tree holds
        other nodes than dicts, lists and tuples (NamedTuples of optax
        states, ...). Without it, the saved dicts, lists and tuples are
        rebuilt as saved (a params dict keeps its order).

    Returns:
      The tree.

    Raises:
      CheckpointNotFoundError: no file at ``path``.
      CheckpointError: the file is corrupt, foreign, needs ``like``, or does
        not match ``like`` (every missing, unexpected or mis-shaped path is
        listed in one error).

    Example::

      >>> mh.io.save("/tmp/params.npz", {"~/w": jnp.zeros(3)})
      >>> like = {"~/w": jax.ShapeDtypeStruct((3,), jnp.float32)}
      >>> mh.io.load("/tmp/params.npz", like=like)
      {'~/w': array([0., 0., 0.], dtype=float32)}
    """
    name = _atomic_file.as_str(path, "mh.io.load")
    paths, values, skeleton = _read(name)
    if like is None:
        return _io_tree.rebuild(skeleton, values, name)
    result, missing, unexpected, mismatched = _io_tree.match(paths, values, like, name)
    if missing or unexpected or mismatched:
        raise errors.CheckpointError(_mismatch_message(name, missing, unexpected, mismatched))
    return result


def load_partial(path: _atomic_file.PathLike, like: Any) -> tuple[Any, list[str]]:
    """Loads the leaves of ``like`` that the file has, with the same shape and dtype.

    For warm starts: ``like`` is usually freshly initialised params, and the
    result is ``like`` with every leaf the file holds replaced by the saved
    value. Entries of the file that ``like`` lacks are ignored.

    Args:
      path: a file written by :func:`save`.
      like: the tree to fill (arrays or ``jax.ShapeDtypeStruct`` leaves).

    Returns:
      ``(loaded, missing)``: ``loaded`` has ``like``'s structure, with saved
      values where they fit and ``like``'s own leaves elsewhere; ``missing``
      lists the ``keystr`` paths of the leaves not loaded (absent from the
      file, or saved with another shape or dtype).

    Example::

      >>> mh.io.save("/tmp/params.npz", {"~/w": jnp.ones(2)})
      >>> fresh = {"~/w": jnp.zeros(2), "~/b": jnp.zeros(1)}
      >>> loaded, missing = mh.io.load_partial("/tmp/params.npz", like=fresh)
      >>> missing
      ["['~/b']"]
    """
    name = _atomic_file.as_str(path, "mh.io.load_partial")
    paths, values, _ = _read(name)
    result, missing, _, mismatched = _io_tree.match(paths, values, like, name)
    bad = set(missing) | {p for p, _ in mismatched}
    return result, [p for p in _io_tree.like_paths(like) if p in bad]


def _dtype_name(dtype: np.dtype) -> str:
    return "float0" if dtype == jax.dtypes.float0 else dtype.name


def _dtype(name: str) -> np.dtype:
    return jax.dtypes.float0 if name == "float0" else jnp.dtype(name)


def _storable(value: np.ndarray) -> np.ndarray:
    """The array as numpy can write it without pickle."""
    if value.dtype == jax.dtypes.float0:
        return np.zeros((0,), np.uint8)  # No data: the header has the shape.
    if not _io_tree.is_native(value.dtype):
        return value.view(f"uint{8 * value.dtype.itemsize}")
    return value


def _write_entry(zf: zipfile.ZipFile, key: str, value: np.ndarray) -> None:
    with zf.open(key + ".npy", "w", force_zip64=True) as out:
        np.lib.format.write_array(out, value, allow_pickle=False)


def _read(name: str) -> tuple[list[str], list[np.ndarray], Any]:
    """The ``keystr`` paths, the values and the tree skeleton of a file."""
    try:
        with open(name, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError as e:
        raise CheckpointNotFoundError(
            f"mh.io.load: no file at '{name}'. Fix: check the path, or save first "
            "with mh.io.save(path, params).") from e
    except OSError as e:
        raise errors.CheckpointError(
            f"mh.io.load: cannot read '{name}': {e.strerror or e}. Fix: pass the path of "
            "a file written by mh.io.save.") from e
    if magic != b"PK\x03\x04":
        raise errors.CheckpointError(_foreign(name, "it is not a .npz (zip) file"))
    try:
        with zipfile.ZipFile(name) as zf:
            files = set(zf.namelist())
            if _HEADER + ".npy" not in files:
                raise errors.CheckpointError(_foreign(name, "it has no minihaiku header"))
            header = json.loads(_read_entry(zf, _HEADER).tobytes().decode())
            if not isinstance(header, dict) or header.get("format") != _FORMAT:
                raise errors.CheckpointError(_foreign(name, "its header is not minihaiku's"))
            entries, skeleton, names = _layout(name, header)
            values = [_read_value(zf, name, n, entry)
                      for n, entry in zip(names, entries, strict=True)]
            extra = files - {n + ".npy" for n in names} - {_HEADER + ".npy"}
            if extra:
                raise errors.CheckpointError(_corrupt(
                    name, f"entries not in its header: {sorted(extra)}"))
            return [p for p, _, _ in entries], values, skeleton
    except errors.CheckpointError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise errors.CheckpointError(_corrupt(name, f"its header is malformed ({e!r})")) from e
    except Exception as e:  # noqa: BLE001  (zip, npy and decode errors all mean corrupt)
        raise errors.CheckpointError(_corrupt(name, f"{type(e).__name__}: {e}")) from e


def _layout(name: str, header: dict) -> tuple[list, Any, list[str]]:
    """Entries ``[path, dtype, shape]``, skeleton and entry names, for any version."""
    version = header.get("version")
    if version == 1:  # A flat dict; entries named by their keys.
        keys = [key for key, _, _ in header["entries"]]
        entries = [[_io_tree.dict_path(k), d, s] for k, d, s in header["entries"]]
        return entries, _io_tree.flat_dict_skeleton(keys), keys
    if version == _VERSION:
        entries = header["entries"]
        return entries, header["tree"], [str(i) for i in range(len(entries))]
    raise errors.CheckpointError(
        f"mh.io.load: '{name}' has format version {version}, this minihaiku reads "
        f"versions 1 and {_VERSION}. Fix: upgrade minihaiku.")


def _read_entry(zf: zipfile.ZipFile, key: str) -> np.ndarray:
    with zf.open(key + ".npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _read_value(zf: zipfile.ZipFile, name: str, key: str, entry: Sequence) -> np.ndarray:
    path, dtype_name, shape = entry
    value = _read_entry(zf, key)
    dtype = _dtype(dtype_name)
    if dtype == jax.dtypes.float0:
        if value.size == 0:
            value = np.zeros(shape, dtype)
    elif not _io_tree.is_native(dtype):
        value = value.view(dtype)
    if value.dtype != dtype or list(value.shape) != list(shape):
        raise errors.CheckpointError(_corrupt(
            name, f"{path} is {_io_tree.describe(value)} but the header says "
            f"{dtype_name}{tuple(shape)}"))
    return value


def _foreign(name: str, why: str) -> str:
    return (f"mh.io.load: '{name}' was not written by mh.io.save ({why}). Fix: load it "
            "with numpy.load, or re-save the params with mh.io.save.")


def _corrupt(name: str, why: str) -> str:
    return (f"mh.io.load: '{name}' is truncated or corrupt: {why}. Fix: re-save it, or "
            "load an earlier checkpoint.")


def _mismatch_message(name: str, missing: list[str], unexpected: list[str],
                      mismatched: list[tuple[str, str]]) -> str:
    lines = [f"mh.io.load: '{name}' does not match `like`:"]
    if missing:
        lines.append(f"  missing from the file ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        lines.append(f"  unexpected in the file ({len(unexpected)}): " + ", ".join(unexpected))
    if mismatched:
        lines.append(f"  different shape or dtype ({len(mismatched)}):")
        lines.extend(f"    {p}: {why}" for p, why in mismatched)
    lines.append("Fix: build `like` from the same network and inputs as the saved tree, "
                 "or use mh.io.load_partial to load only the matching paths.")
    return "\n".join(lines)
