"""``get_param``: create a parameter in ``init``, read it in ``apply``."""

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import _hooks
from minihaiku import rng as rng_lib
from minihaiku.sharding import _collect as axes_lib

Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]


def _standard_normal(key, shape, dtype):
    return jax.random.normal(key, shape, dtype)


# x64 flag -> {dtype as requested -> dtype as stored}; without x64, a float64
# request is stored as float32.
_CANONICAL: dict = {False: {}, True: {}}


def canonical_dtype(dtype) -> np.dtype:
    """The dtype JAX would actually store for a request of ``dtype``."""
    cache = _CANONICAL[jax.config.jax_enable_x64]
    out = cache.get(dtype)
    if out is None:
        cache[dtype] = out = jax.dtypes.canonicalize_dtype(dtype)
    return out


def check_value(kind: str, path: str, value, shape, dtype, fix: str) -> None:
    """Raises a ``MismatchError`` unless ``value`` has ``shape`` and ``dtype``."""
    if shape is not None and value.shape != shape:
        raise errors.MismatchError(
            f"{kind} '{path}' has shape {tuple(value.shape)} but shape "
            f"{tuple(shape)} was requested. {fix}")
    if dtype is not None and value.dtype != canonical_dtype(dtype):
        raise errors.MismatchError(
            f"{kind} '{path}' has dtype {value.dtype} but dtype "
            f"{np.dtype(dtype).name} was requested. {fix}")


_FLOAT32 = np.dtype(np.float32)

_READ_FIX = ("Request the same shape and dtype everywhere this param is used, "
             "or re-run init if the inputs changed shape.")


def get_param(name: str, shape: Sequence[int], dtype: Any = jnp.float32,
              init: Optional[Initializer] = None,
              axes: Optional[Sequence[Optional[str]]] = None) -> jax.Array:
    """Creates (in ``init``) or reads (in ``apply``) the param ``name``.

    The param's path is the running module method's scope plus ``name``, e.g.
    ``~/MLP_0/__call__/Linear_1/__call__/w``.

    Args:
      name: the param's name within the current scope.
      shape: its shape.
      dtype: its dtype.
      init: ``init(key, shape, dtype)``, e.g. from ``jax.nn.initializers``;
        default: standard normal.
      axes: optional logical axis names, one per dimension (e.g.
        ``("embed", "mlp")``), for ``mh.sharding.logical_rules``.

    Returns:
      The param's value.

    Example::

      def f(x):
        w = mh.get_param("w", (x.shape[-1], 3), init=jax.nn.initializers.zeros)
        return x @ w
    """
    if _hooks.PARAMS and not _hooks.LOCAL.bypass:
        return _hooks.get_param(get_param, name, shape, dtype, init)
    frame = frame_lib.current_frame("mh.get_param")
    path = f"{frame.scope}/{name}"
    if type(shape) is not tuple:
        shape = tuple(shape)
    value = frame.params.get(path)
    if value is not None:
        # The hot path. Reading an existing param is harmless even under a raw
        # JAX transform (the value is closed over), so only creation pays for
        # the trace check. Builtin np.dtypes are singletons: `is` settles the
        # common case without the slower dtype equality.
        if dtype is jnp.float32:
            dtype = _FLOAT32
        stored = value.dtype
        if value.shape != shape or (stored is not dtype and stored != canonical_dtype(dtype)):
            check_value("Param", path, value, shape, dtype, _READ_FIX)
        return value
    if not frame.is_init:
        raise errors.MissingParamError(_missing_message(
            "param", path, shape, frame.params,
            "Params can only be created in init: run init with the same "
            "function and inputs, and pass its params to apply."))
    frame_lib.check_trace(frame, "mh.get_param", path)
    check_name("Param", name, f"path '{path}'")
    value = _create(frame, path, init or _standard_normal, shape, dtype)
    check_value("The initializer of param", path, value, shape, dtype,
                "Fix the initializer to return the shape and dtype asked.")
    if axes is not None:
        axes_lib.record(path, axes, shape)
    frame.params[path] = value
    return value


def _create(frame, path, init, shape, dtype):
    if frame.rng is not None:
        return init(next(frame.rng), shape, dtype)
    # Without an rng, deterministic initializers (zeros, ones, constant)
    # still work; only one that really uses its key is an error.
    try:
        return init(None, shape, dtype)
    except Exception as e:  # Most likely it needed its key; say what failed.
        raise rng_lib.no_rng_error(
            f"Creating param '{path}' (its initializer failed with key=None: "
            f"{type(e).__name__}: {e})") from e


def check_name(kind: str, name, where: str) -> None:
    """Refuses a param, state or module name that is empty or holds a '/'.

    '/' joins the scopes of a path, so such a name could alias another path.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise errors.MiniHaikuError(
            f"{kind} name {name!r} ({where}) is invalid: it must be a non-empty "
            "string without '/', or it could alias another path. Fix: use a "
            "plain name like 'w'; modules give the scope.")


def _missing_message(kind: str, path: str, shape, known, fix: str) -> str:
    name = path.rsplit("/", 1)[-1]
    near = [p for p in known if p.rsplit("/", 1)[-1] == name][:3]
    hint = f" Known {kind}s named '{name}': {near}." if near else ""
    shape_part = "" if shape is None else f" (shape {tuple(shape)})"
    return (f"{kind.capitalize()} '{path}'{shape_part} is missing in apply: "
            f"it was not created in init.{hint} {fix}")
