"""What every ``mh.nn`` layer shares: default initializers and argument checks.

The error rule of the package (see its docstring): a constructor (or
function) argument that is wrong on its own is an ``InvalidArgumentError``;
an input array that does not fit the module at call time (rank, shape,
dtype, values) is a ``ModuleInputError``. Both name the module by
:func:`where`.
"""

import math
from typing import Any, TypeGuard

import jax
import jax.numpy as jnp

from minihaiku import errors

zeros = jax.nn.initializers.zeros


def where(module: Any) -> str:
    """How messages name a module: ``"Linear at '~/Linear_0'"``."""
    return f"{type(module).__name__} at '{module.module_path}'"


def is_int(value: Any) -> TypeGuard[int]:
    """A Python int that is not a bool (``True`` is no size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def truncated_normal(stddev: float, key: jax.Array, shape: Any, dtype: Any) -> jax.Array:
    """A truncated normal with ``stddev``, as ``jax.nn.initializers.truncated_normal``."""
    return jax.nn.initializers.truncated_normal(stddev)(key, shape, dtype)


def fan_in_truncated_normal(key: jax.Array, shape: Any, dtype: Any) -> jax.Array:
    """Haiku's default kernel init: truncated normal, stddev ``1/sqrt(fan_in)``.

    ``fan_in`` is the product of every axis but the last (``[in, out]``,
    ``[*kernel, in, out]``), read from the shape so that one module-level
    function serves every layer and apply builds nothing it would not use.
    """
    return truncated_normal(1.0 / math.sqrt(math.prod(shape[:-1])), key, shape, dtype)


def positive_int(module: Any, value: Any, what: str, example: int = 16) -> int:
    """``value`` if it is an int ``>= 1``, else an ``InvalidArgumentError``."""
    if not is_int(value) or value < 1:
        raise errors.InvalidArgumentError(
            f"{where(module)} got {what}={value!r}; it must be an int >= 1. "
            f"Fix: pass e.g. {what}={example}.")
    return value


def check_bias_init(module: Any, with_bias: bool, b_init: Any) -> None:
    """Refuses a ``b_init`` for a layer built without a bias."""
    if not with_bias and b_init is not None:
        raise errors.InvalidArgumentError(
            f"{where(module)} got b_init but with_bias=False. Fix: drop b_init "
            "or set with_bias=True.")


def check_floating(module: Any, x: jax.Array) -> None:
    """Refuses a non-floating input of a layer whose params take the input's dtype."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise not_floating(module, x)


def not_floating(module: Any, x: jax.Array) -> errors.ModuleInputError:
    """The error of :func:`check_floating`, for hot paths that test the dtype inline."""
    return errors.ModuleInputError(
        f"{where(module)} got an input of dtype {x.dtype} (shape {x.shape}); "
        "params take the input's dtype, so it must be floating. Fix: cast "
        "first, e.g. x.astype(jnp.float32).")
