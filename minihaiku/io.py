"""``save`` and ``load``: params or state to one self-describing ``.npz`` file.

The file is a zip of ``.npy`` entries, one per path, plus a header entry
(``__minihaiku__``) that marks the file as minihaiku's and records every
path's dtype and shape. Dtypes numpy cannot store natively (``bfloat16``,
``float8_*``, ``int4``, ...) are stored as their raw bits in an unsigned int
of the same width and viewed back on load. ``save`` writes a temporary file
next to the target and renames it over the target, so a crash leaves either
the old file or the new one, never half a file.
"""

import json
import os
import tempfile
import zipfile
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import errors

# The process umask, read once (reading it means setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)

_HEADER = "__minihaiku__"
_FORMAT = "minihaiku.io"
_VERSION = 1


CheckpointNotFoundError = errors.CheckpointNotFoundError


def save(path: str, tree: Mapping[str, Any]) -> None:
    """Saves a flat ``{path: array}`` dict (params or state) to ``path`` atomically.

    The file is written exactly at ``path`` (no suffix is added). Dtypes are
    kept, ``bfloat16`` included.

    Args:
      path: where to write, e.g. ``"/tmp/params.npz"``.
      tree: the params or state, as returned by ``init`` or ``apply``.

    Example::

      params = init(jax.random.PRNGKey(0), x)
      mh.io.save("/tmp/params.npz", params)
      params = mh.io.load("/tmp/params.npz")
    """
    path = os.fspath(path)
    arrays = _host_arrays(tree)
    header = {"format": _FORMAT, "version": _VERSION,
              "entries": [[k, a.dtype.name, list(a.shape)] for k, a in arrays.items()]}
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                _write_entry(zf, _HEADER, np.frombuffer(json.dumps(header).encode(), np.uint8))
                for key, value in arrays.items():
                    _write_entry(zf, key, _storable(value))
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; give it the mode a plain open() would.
        os.chmod(tmp, os.stat(path).st_mode if os.path.exists(path) else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        # Whatever failed, the target is untouched and no temporary file stays.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str, like: Optional[Mapping[str, Any]] = None, strict: bool = True):
    """Loads a file written by :func:`save` as a flat ``{path: numpy array}`` dict.

    Values are host ``numpy`` arrays with the saved dtypes (``bfloat16`` as
    ``ml_dtypes.bfloat16``); pass them straight to ``apply`` or place them with
    ``jax.device_put``. Entries come in the order they were saved.

    Args:
      path: a file written by :func:`save`.
      like: optional flat ``{path: array or jax.ShapeDtypeStruct}`` the file
        must match, e.g. ``jax.eval_shape(init, rng, x)``. The result then
        follows ``like``'s order.
      strict: with ``like``, whether any missing, unexpected or mis-shaped
        path is an error (listing all of them). With ``strict=False`` the
        paths that match are loaded and the others are reported instead.

    Returns:
      The dict, or with ``strict=False`` a pair ``(dict, missing)`` where
      ``missing`` lists the paths of ``like`` that were not loaded (absent
      from the file, or with another shape or dtype).

    Raises:
      MiniHaikuError: the file is missing, truncated, corrupt or not written
        by minihaiku, or (``strict=True``) does not match ``like``.

    Example::

      like = jax.eval_shape(init, jax.random.PRNGKey(0), x)
      params = mh.io.load("/tmp/params.npz", like=like)
    """
    path = os.fspath(path)
    loaded = _read(path)
    if like is None:
        return loaded if strict else (loaded, [])
    like = _mapping(like, "load(..., like=...)")
    missing = [key for key in like if key not in loaded]
    mismatched = [key for key, ref in like.items() if key in loaded and (
        tuple(loaded[key].shape) != tuple(ref.shape) or loaded[key].dtype != jnp.dtype(ref.dtype))]
    unexpected = [key for key in loaded if key not in like]
    if strict and (missing or mismatched or unexpected):
        raise errors.MiniHaikuError(_mismatch_message(
            path, missing, unexpected,
            [f"{k}: file has {_describe(loaded[k])}, expected {_describe(like[k])}"
             for k in mismatched]))
    bad = set(missing) | set(mismatched)
    result = {key: loaded[key] for key in like if key not in bad}
    if strict:
        return result
    return result, [key for key in like if key in bad]


def _host_arrays(tree) -> dict:
    tree = _mapping(tree, "save(path, tree)")
    arrays = {}
    for key, value in tree.items():
        if not isinstance(key, str) or key == _HEADER:
            raise errors.MiniHaikuError(
                f"save: key {key!r} cannot be saved: keys must be strings other than "
                f"'{_HEADER}'. Fix: save the params or state dict returned by init/apply.")
        dtype = getattr(value, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            raise errors.MiniHaikuError(
                f"save: '{key}' is a typed PRNG key array, which has no file format. "
                "Fix: save jax.random.key_data(key) and rebuild it with "
                "jax.random.wrap_key_data after loading.")
        try:
            arrays[key] = np.asarray(value)
        except Exception as e:  # noqa: BLE001  (any conversion failure gets the path)
            raise errors.MiniHaikuError(
                f"save: '{key}' ({type(value).__name__}) is not an array: {e}. Fix: "
                "save only arrays (e.g. the dict returned by init).") from e
        if arrays[key].dtype == object:
            raise errors.MiniHaikuError(
                f"save: '{key}' has dtype object ({type(value).__name__}), which cannot "
                "be saved without pickle. Fix: save only numeric arrays.")
    return arrays


def _mapping(tree, call: str) -> Mapping:
    if not isinstance(tree, Mapping):
        raise errors.MiniHaikuError(
            f"{call} expects a flat dict of path -> array (params or state), got "
            f"{type(tree).__name__}. Fix: pass params and state separately, e.g. "
            "save('params.npz', params) and save('state.npz', state).")
    return tree


def _storable(value: np.ndarray) -> np.ndarray:
    """The array as numpy can write it: non-native dtypes as raw unsigned bits."""
    if value.dtype.kind == "V":
        return value.view(f"uint{8 * value.dtype.itemsize}")
    return value


def _write_entry(zf: zipfile.ZipFile, key: str, value: np.ndarray) -> None:
    with zf.open(key + ".npy", "w", force_zip64=True) as out:
        np.lib.format.write_array(out, value, allow_pickle=False)


def _read(path: str) -> dict:
    if not os.path.exists(path):
        raise CheckpointNotFoundError(
            f"mh.io.load: no file at '{path}'. Fix: check the path, or save first "
            "with mh.io.save(path, params).")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise errors.MiniHaikuError(
            f"mh.io.load: cannot read '{path}': {e}. Fix: pass the path of a file "
            "written by mh.io.save.") from e
    if magic != b"PK\x03\x04":
        raise errors.MiniHaikuError(_foreign(path, "it is not a .npz (zip) file"))
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _HEADER not in npz.files:
                raise errors.MiniHaikuError(_foreign(path, "it has no minihaiku header"))
            header = json.loads(npz[_HEADER].tobytes().decode())
            if header.get("format") != _FORMAT:
                raise errors.MiniHaikuError(_foreign(path, "its header is not minihaiku's"))
            if header.get("version") != _VERSION:
                raise errors.MiniHaikuError(
                    f"mh.io.load: '{path}' has format version {header.get('version')}, "
                    f"this minihaiku reads version {_VERSION}. Fix: upgrade minihaiku.")
            out = {}
            for key, dtype_name, shape in header["entries"]:
                value = npz[key]
                dtype = jnp.dtype(dtype_name)
                if dtype.kind == "V":
                    value = value.view(dtype)
                if value.dtype != dtype or list(value.shape) != shape:
                    raise errors.MiniHaikuError(_corrupt(
                        path, f"'{key}' is {_describe(value)} but the header says "
                        f"{dtype_name}{tuple(shape)}"))
                out[key] = value
            extra = set(npz.files) - set(out) - {_HEADER}
            if extra:
                raise errors.MiniHaikuError(_corrupt(
                    path, f"entries not in its header: {sorted(extra)}"))
            return out
    except errors.MiniHaikuError:
        raise
    except (KeyError, TypeError, AttributeError) as e:
        raise errors.MiniHaikuError(_corrupt(path, f"its header is malformed ({e!r})")) from e
    except Exception as e:  # noqa: BLE001  (zip, npy and decode errors all mean corrupt)
        raise errors.MiniHaikuError(_corrupt(path, f"{type(e).__name__}: {e}")) from e


def _describe(value) -> str:
    return f"{jnp.dtype(value.dtype).name}{tuple(value.shape)}"


def _foreign(path: str, why: str) -> str:
    return (f"mh.io.load: '{path}' was not written by mh.io.save ({why}). Fix: load it "
            "with numpy.load, or re-save the params with mh.io.save.")


def _corrupt(path: str, why: str) -> str:
    return (f"mh.io.load: '{path}' is truncated or corrupt: {why}. Fix: re-save it, or "
            "load an earlier checkpoint.")


def _mismatch_message(path, missing, unexpected, mismatched) -> str:
    lines = [f"mh.io.load: '{path}' does not match `like`:"]
    if missing:
        lines.append(f"  missing from the file ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        lines.append(f"  unexpected in the file ({len(unexpected)}): " + ", ".join(unexpected))
    if mismatched:
        lines.append(f"  different shape or dtype ({len(mismatched)}):")
        lines.extend(f"    {m}" for m in mismatched)
    lines.append("Fix: build `like` from the same network and inputs as the saved params, "
                 "or pass strict=False to load only the matching paths.")
    return "\n".join(lines)
