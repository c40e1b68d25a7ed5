"""The checks shared by params, state and modules: names, shapes, dtypes, initializers.

Each check either passes silently or raises the most specific error of
:mod:`minihaiku.errors` with a message naming the path, the values involved
and the fix. None of them runs on a hot path: ``get_param`` reading an
existing param compares shape and dtype inline and only calls in here when
something is wrong or a value is being created.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from minihaiku import errors

# x64 flag -> {dtype as requested -> dtype as stored}; without x64, a float64
# request is stored as float32.
_CANONICAL: dict = {False: {}, True: {}}


def canonical_dtype(dtype: Any) -> np.dtype:
    """The dtype JAX would actually store for a request of ``dtype``."""
    cache = _CANONICAL[jax.config.jax_enable_x64]  # type: ignore[attr-defined]  # jax.config's flags are dynamic attributes, not in its stubs
    out = cache.get(dtype)
    if out is None:
        try:
            out = jax.dtypes.canonicalize_dtype(dtype)
        except TypeError as e:
            raise errors.InvalidArgumentError(
                f"{dtype!r} is not a dtype. Fix: pass e.g. jnp.float32.") from e
        cache[dtype] = out
    return out


def check_name(kind: str, name: object, where: str) -> None:
    """Refuses a param, state, module or scope name that is empty or holds a '/'.

    '/' joins the scopes of a path, so such a name could alias another path.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise errors.InvalidNameError(
            f"{kind} name {name!r} ({where}) is invalid: it must be a non-empty "
            "string without '/', or it could alias another path. Fix: use a "
            "plain name like 'w'; modules give the scope.")


def as_shape(shape: Any, kind: str, path: str) -> tuple:
    """``shape`` as a tuple of non-negative ints, or an ``InvalidArgumentError``.

    Any sequence of ints is taken (a list, numpy ints); a bare int is refused,
    as in Haiku: ``(3,)`` and ``3`` are too easy to confuse with ``(3, 3)``.
    """
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise errors.InvalidArgumentError(
            f"{kind} '{path}': shape must be a tuple of ints, got "
            f"{type(shape).__name__} {shape!r}. Fix: pass e.g. ({shape!r},) "
            "for a vector, () for a scalar.")
    dims = tuple(shape)
    for d in dims:
        if (not isinstance(d, (int, np.integer)) or isinstance(d, bool)
                or d < 0):
            raise errors.InvalidArgumentError(
                f"{kind} '{path}': shape {dims!r} must hold non-negative ints, "
                f"got {d!r}. Fix: pass e.g. (3, 4).")
    return tuple(int(d) for d in dims)


def check_value(kind: str, path: str, value: Any, shape: Any, dtype: Any, fix: str) -> None:
    """Raises unless ``value`` is an array with ``shape`` and ``dtype``.

    A value that is not an array at all (a list, a float in a params dict, an
    initializer returning a list) is an ``InvalidArgumentError``; a shape or
    dtype that differs is a ``MismatchError``.
    """
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise errors.InvalidArgumentError(
            f"{kind} '{path}' is a {type(value).__name__}, not an array. "
            "Params and state map paths to arrays (jax.Array or np.ndarray), "
            "as init returns them. Fix: pass init's output unchanged, or wrap "
            "the value in jnp.asarray.")
    if shape is not None and value.shape != shape:
        raise errors.MismatchError(
            f"{kind} '{path}' has shape {tuple(value.shape)} but shape "
            f"{tuple(shape)} was requested. {fix}")
    if dtype is not None and value.dtype != canonical_dtype(dtype):
        raise errors.MismatchError(
            f"{kind} '{path}' has dtype {value.dtype} but dtype "
            f"{np.dtype(dtype).name} was requested. {fix}")


# What each kind of initializer is called with, and an example of each.
_PARAM_INIT = ("init(key, shape, dtype)", "jax.nn.initializers.zeros")
_STATE_INIT = ("init(shape, dtype)", "jnp.zeros")


def _takes_key(init: Callable) -> bool | None:
    """Whether ``init`` looks like ``init(key, shape, dtype)``; ``None`` if unknown."""
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(None, (), np.float32)
    except TypeError:
        return False  # Cannot take three positional arguments.
    first = next(iter(sig.parameters), "")
    return first in ("key", "rng", "prng_key", "rng_key") or None


def initializer_error(kind: str, path: str, init: Callable,
                      error: Exception) -> errors.InvalidArgumentError | None:
    """An error saying ``init`` has the other signature, if it does.

    Args:
      kind: ``"param"`` or ``"state"``.
      path: the path being created.
      init: the initializer that raised ``error``.
      error: what it raised.

    Returns:
      An ``InvalidArgumentError`` when the initializer's signature is the
      other kind's (e.g. ``jnp.zeros`` for a param), else ``None``.
    """
    takes_key = _takes_key(init)
    if kind == "param" and takes_key is False:
        wanted, other = _PARAM_INIT, _STATE_INIT
    elif kind == "state" and takes_key is True:
        wanted, other = _STATE_INIT, _PARAM_INIT
    else:
        return None
    return errors.InvalidArgumentError(
        f"The initializer of {kind} '{path}' failed ({type(error).__name__}: "
        f"{error}). It looks like a {'state' if kind == 'param' else 'param'} "
        f"initializer, called as {other[0]} (like {other[1]}), but {kind} "
        f"initializers are called as {wanted[0]}. Fix: pass e.g. "
        f"init={wanted[1]}.")


def missing_message(kind: str, path: str, shape: Any, known: Mapping,
                    fix: str) -> str:
    """The message for ``path`` missing in apply, naming near paths in ``known``."""
    name = path.rsplit("/", 1)[-1]
    near = [p for p in known if p.rsplit("/", 1)[-1] == name][:3]
    hint = f" Known {kind}s named '{name}': {near}." if near else ""
    shape_part = "" if shape is None else f" (shape {tuple(shape)})"
    return (f"{kind.capitalize()} '{path}'{shape_part} is missing in apply: "
            f"it was not created in init.{hint} {fix}")



def no_rng_error(what: str) -> errors.NoRngError:
    """The error for ``what`` needing a key in a transform given ``rng=None``."""
    return errors.NoRngError(
        f"{what} needs a random key, but this transformed function was "
        "called with rng=None. Fix: pass a key or seed, e.g. "
        "`init(jax.random.PRNGKey(0), x)` or `apply(params, 42, x)` (and "
        "don't wrap it in mh.without_apply_rng).")
