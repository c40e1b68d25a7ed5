"""``get_param``: create a parameter in ``init``, read it in ``apply``."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import _hooks, checks, errors
from minihaiku import frame as frame_lib
from minihaiku import rng as rng_lib
from minihaiku.checks import canonical_dtype
from minihaiku.sharding import _collect as axes_lib

Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]


def _standard_normal(key, shape, dtype):
    return jax.random.normal(key, shape, dtype)


_FLOAT32 = np.dtype(np.float32)

_READ_FIX = ("Request the same shape and dtype everywhere this param is used, "
             "or re-run init if the inputs changed shape.")


def get_param(name: str, shape: Sequence[int], dtype: Any = jnp.float32,
              init: Initializer | None = None,
              axes: Sequence[str | None] | None = None) -> jax.Array:
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
        shape = checks.as_shape(shape, "Param", path)
    value = frame.params.get(path)
    if value is not None:
        # The hot path. Reading an existing param is harmless even under a raw
        # JAX transform (the value is closed over), so only creation pays for
        # the trace check. Builtin np.dtypes are singletons: `is` settles the
        # common case without the slower dtype equality. A value that is not
        # an array (a list or float in the params dict) fails the attribute
        # reads; the try costs nothing when nothing is raised.
        if dtype is jnp.float32:
            dtype = _FLOAT32
        try:
            stored = value.dtype
            if value.shape == shape and (stored is dtype or stored == canonical_dtype(dtype)):
                return value
        except AttributeError:
            pass
        checks.check_value("Param", path, value, shape, dtype, _READ_FIX)
        return value
    if not frame.is_init:
        raise errors.MissingParamError(checks.missing_message(
            "param", path, shape, frame.params,
            "Params can only be created in init: run init with the same "
            "function and inputs, and pass its params to apply."))
    frame_lib.check_trace(frame, "mh.get_param", path)
    checks.check_name("Param", name, f"path '{path}'")
    shape = checks.as_shape(shape, "Param", path)
    value = _create(frame, path, init or _standard_normal, shape, dtype)
    checks.check_value("The initializer of param", path, value, shape, dtype,
                       "Fix the initializer to return an array of the shape "
                       "and dtype asked.")
    if axes is not None:
        axes_lib.record(path, axes, shape)
    frame.params[path] = value
    return value


def _create(frame, path, init, shape, dtype):
    key = None if frame.rng is None else next(frame.rng)
    try:
        return init(key, shape, dtype)
    except Exception as e:
        mixed_up = checks.initializer_error("param", path, init, e)
        if mixed_up is not None:
            raise mixed_up from e
        if key is not None:
            raise
        # Without an rng, deterministic initializers (zeros, ones, constant)
        # still work; one that really uses its key is an error saying so.
        raise rng_lib.no_rng_error(
            f"Creating param '{path}' (its initializer failed with key=None: "
            f"{type(e).__name__}: {e})") from e

