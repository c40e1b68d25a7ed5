"""``get_param``: create a parameter in ``init``, read it in ``apply``.

One pipeline (see :mod:`minihaiku.interceptors`): resolve the path, look it
up, create it if missing (init only; through the creator chain when
interceptors are in force, the result checked either way), then the getter
chain. With no interceptor in force (``frame.hooks is None``) the lookup and
the inline check are all a read costs.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import checks, errors
from minihaiku import frame as frame_lib
from minihaiku import interceptors as hooks_lib
from minihaiku import rng as rng_lib
from minihaiku.checks import canonical_dtype

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

      params = mh.transform(f).init(0, jnp.ones((1, 2)))
    """
    frame = frame_lib.current_frame("mh.get_param")
    path = f"{frame.scope}/{name}"
    if type(shape) is not tuple:
        shape = checks.as_shape(shape, "Param", path)
    hooks = frame.hooks
    if hooks is not None:
        return _hooked(frame, hooks, path, name, shape, dtype, init, axes)
    value = frame.params.get(path)
    if value is None:
        return _create(frame, path, name, shape, dtype, init, axes, None, None)
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


def _hooked(frame: frame_lib.Frame, hooks: hooks_lib.Hooks, path: str, name: str,
            shape: tuple, dtype: Any, init: Initializer | None, axes: Any) -> jax.Array:
    """``get_param`` with interceptors in force: the same steps, with the chains."""
    ctx = hooks.context(path, name)
    for rule in hooks.param_dtypes:  # e.g. a precision policy's param dtype
        dtype = rule(dtype, ctx)
    value = frame.params.get(path)
    if value is None:
        value = _create(frame, path, name, shape, dtype, init, axes,
                        hooks.param_creators, ctx)
    else:
        checks.check_value("Param", path, value, shape, dtype, _READ_FIX)
    if hooks.param_getters:
        return hooks_lib.get(hooks.param_getters, value, ctx)
    return value


def _create(frame: frame_lib.Frame, path: str, name: str, shape: tuple, dtype: Any,
            init: Initializer | None, axes: Any, creators: tuple | None,
            ctx: hooks_lib.Context | None) -> jax.Array:
    """Creates, checks and stores a missing param (init only)."""
    if not frame.is_init:
        raise errors.MissingParamError(checks.missing_message(
            "param", path, shape, frame.params,
            "Params can only be created in init: run init with the same "
            "function and inputs, and pass its params to apply."))
    frame_lib.check_trace(frame, "mh.get_param", path)
    checks.check_name("Param", name, f"path '{path}'")
    if axes is not None:
        axes = _checked_axes(path, axes, shape)
    init = init or _standard_normal

    def create(shape, dtype, init):
        value = _initialize(frame, path, init, shape, dtype)
        checks.check_value("The initializer of param", path, value, shape, dtype,
                           "Fix the initializer to return an array of the shape "
                           "and dtype asked.")
        return value

    if creators:
        value = hooks_lib.chain(creators, ctx, create)(shape, dtype, init)  # type: ignore[arg-type]
        checked_creation("param", path, value, shape, dtype)
    else:
        value = create(shape, dtype, init)
    if axes is not None:
        frame.axes[path] = axes
    frame.params[path] = value
    return value


def checked_creation(kind: str, path: str, value: Any, shape: tuple, dtype: Any) -> None:
    """Refuses what a custom creator returned unless it has the shape and dtype asked."""
    try:
        checks.check_value(f"The value a custom creator made for {kind}", path, value,
                           shape, dtype, "")
    except errors.MiniHaikuError as e:
        raise errors.InterceptorError(
            f"{e} A custom creator must return what was asked: shape {tuple(shape)}, "
            f"dtype {canonical_dtype(dtype)}. Fix: return next_creator(shape, dtype, "
            "init) or an array of that shape and dtype; change values in a "
            "custom_getter instead.") from None


def _checked_axes(path: str, axes: Any, shape: tuple) -> tuple:
    if (not isinstance(axes, (tuple, list)) or len(axes) != len(shape)
            or not all(a is None or isinstance(a, str) for a in axes)):
        raise errors.InvalidArgumentError(
            f"Param '{path}' of shape {shape} was given axes={axes!r}: axes must "
            f"be a tuple of {len(shape)} logical axis names (str, or None for an "
            "axis never sharded), one per dimension. Fix: e.g. "
            f"axes={tuple(['embed', 'mlp', 'heads', 'kv'][:len(shape)])!r}.")
    return tuple(axes)


def _initialize(frame: frame_lib.Frame, path: str, init: Callable, shape: tuple,
                dtype: Any) -> Any:
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
