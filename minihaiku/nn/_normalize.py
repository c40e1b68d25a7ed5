"""What the norms share: argument checks, axes, and the ``scale``/``offset`` params.

Every norm takes ``eps`` under that name with default ``1e-5``, and ``eps`` is
the last argument that may be given by position: the arguments before it are
exactly Haiku's, those after it are keyword-only. The flags are checked to be
bools so that a Haiku-style ``RMSNorm(-1, 1e-6)`` never lands silently in a
flag.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.nn._layer_args import is_int as _is_int
from minihaiku.params import Initializer

Axes = int | Sequence[int] | slice

DATA_FORMATS = {"channels_last": -1, "N...C": -1, "channels_first": 1, "NC...": 1}


def check_flags(where: str, **flags: bool) -> None:
    """Refuses a non-bool ``create_scale``/``create_offset``/... (e.g. a stray eps)."""
    for name, value in flags.items():
        if not isinstance(value, (bool, jnp.bool_)):
            raise errors.InvalidArgumentError(
                f"{where}: {name} must be a bool, got {value!r}. Fix: pass "
                f"{name}=True/False; if {value!r} was meant as eps, pass eps={value!r}.")


def check_axes(where: str, name: str, axis: Any) -> Axes:
    """Checks ``axis`` is an int, a sequence of ints or a slice (not a str)."""
    if isinstance(axis, slice) or _is_int(axis):
        return axis
    if (isinstance(axis, Sequence) and not isinstance(axis, str)
            and all(_is_int(a) for a in axis)):
        return tuple(axis)
    raise errors.InvalidArgumentError(
        f"{where}: {name}={axis!r} is not an axis. Fix: pass an int (e.g. "
        f"{name}=-1), a sequence of ints (e.g. {name}=(1, 2)) or a slice "
        f"(e.g. {name}=slice(1, None)).")


def abs_axes(axis: Axes, ndim: int, where: str) -> tuple:
    """``axis`` as sorted non-negative ints, each checked to exist in rank ``ndim``."""
    if isinstance(axis, slice):
        return tuple(range(ndim)[axis])
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise errors.ModuleInputError(
                f"{where}: axis {a} is out of range for an input of rank {ndim}. "
                "Fix: pass axes that exist in the input, e.g. axis=-1.")
    return tuple(sorted({a % ndim for a in axes}))


def channel_index(data_format: str, where: str) -> int:
    """``-1`` for channels-last, ``1`` for channels-first (Haiku's names)."""
    try:
        return DATA_FORMATS[data_format]
    except (KeyError, TypeError):
        raise errors.InvalidArgumentError(
            f"{where}: data_format={data_format!r} is not known. Fix: pass "
            "'channels_last' (N...C) or 'channels_first' (NC...).") from None


def scale_offset_inits(where: str, create_scale: bool, create_offset: bool,
                       scale_init: Initializer | None,
                       offset_init: Initializer | None) -> tuple:
    """The ``scale``/``offset`` initializers (ones/zeros by default), validated."""
    check_flags(where, create_scale=create_scale, create_offset=create_offset)
    if (scale_init is not None and not create_scale) or (
            offset_init is not None and not create_offset):
        raise errors.InvalidArgumentError(
            f"{where} got an initializer for a param it does not create. Fix: "
            "drop scale_init/offset_init or set create_scale/create_offset=True.")
    return (scale_init or jax.nn.initializers.ones,
            offset_init or jax.nn.initializers.zeros)


def param_shape(x_shape: tuple, param_axes: tuple) -> tuple:
    """Haiku's param shape: ``[C]`` for the last axis, else broadcastable to ``x``."""
    if param_axes == (len(x_shape) - 1,):
        return (x_shape[-1],)
    return tuple(x_shape[i] if i in param_axes else 1 for i in range(len(x_shape)))


def normalize(norm: Any, x: jax.Array, mean: jax.Array, var: jax.Array, shape: Any, dtype: Any,
              bshape: Any = None) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * scale + offset`` with ``norm``'s params.

    The params have shape ``shape``; ``bshape`` (if given) is the shape they
    are reshaped to so they broadcast against ``x`` (e.g. ``[C, 1, 1]``).
    """
    inv = jax.lax.rsqrt(var + jnp.asarray(norm.eps, var.dtype))
    if norm.create_scale:
        scale = params_lib.get_param("scale", shape, dtype, norm.scale_init)
        inv = (scale if bshape is None else scale.reshape(bshape)) * inv
    out = (x - mean) * inv
    if norm.create_offset:
        offset = params_lib.get_param("offset", shape, dtype, norm.offset_init)
        out = out + (offset if bshape is None else offset.reshape(bshape))
    return out


def affine(norm: Any, x: jax.Array, shape: Any) -> jax.Array:
    """``x * scale + offset`` with ``norm``'s params of shape ``shape``."""
    if norm.create_scale:
        x = x * params_lib.get_param("scale", shape, x.dtype, norm.scale_init)
    if norm.create_offset:
        x = x + params_lib.get_param("offset", shape, x.dtype, norm.offset_init)
    return x
