"""Pooling: ``max_pool``, ``avg_pool`` and the ``MaxPool``/``AvgPool`` modules.

Both are ``jax.lax.reduce_window`` over a window; ``avg_pool`` divides by the
window size (``"VALID"``) or, with ``"SAME"``, by the count of real (unpadded)
entries under each window, as Haiku.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn import _layer_args

Size = int | Sequence[int]


def _full_shape(x: jax.Array, size: Size, channel_axis: int | None, what: str,
                caller: str) -> tuple[int, ...]:
    # Haiku's broadcasting: an int applies to every axis but the first (batch)
    # and the channel axis; a shorter sequence is padded with leading 1s.
    if _layer_args.is_int(size):
        if size < 1:
            raise errors.InvalidArgumentError(
                f"{caller} got {what}={size}; it must be >= 1. Fix: e.g. {what}=2.")
        if channel_axis is not None and not -x.ndim <= channel_axis < x.ndim:
            raise errors.ModuleInputError(
                f"{caller} got channel_axis={channel_axis} for an input of shape "
                f"{x.shape}. Fix: pass an axis in [{-x.ndim}, {x.ndim}), or None.")
        channel = None if channel_axis is None else channel_axis % x.ndim
        return (1,) + tuple(1 if d == channel else size for d in range(1, x.ndim))
    try:
        sizes = None if isinstance(size, int) else tuple(size)  # an int here is a bool
    except TypeError:
        sizes = None
    if sizes is None or not all(_layer_args.is_int(s) and s >= 1 for s in sizes):
        raise errors.InvalidArgumentError(
            f"{caller} got {what}={size!r}; it needs an int >= 1 or a sequence of "
            f"them (one per axis). Fix: e.g. {what}=2 or {what}=(1, 2, 2, 1) for NHWC.")
    if len(sizes) > x.ndim:
        raise errors.ModuleInputError(
            f"{caller} got {what}={size!r} for an input of shape {x.shape}; it needs an "
            f"int >= 1 or at most {x.ndim} of them (one per axis; missing leading axes "
            f"are taken as 1). Fix: e.g. {what}=(1, 2, 2, 1) for NHWC.")
    return (1,) * (x.ndim - len(sizes)) + sizes


def _prepare(value, window_shape, strides, padding, channel_axis, caller):
    x = jnp.asarray(value)
    if padding not in ("SAME", "VALID"):
        raise errors.InvalidArgumentError(
            f"{caller} got padding={padding!r}. Fix: pass 'SAME' or 'VALID'.")
    window = _full_shape(x, window_shape, channel_axis, "window_shape", caller)
    strides = _full_shape(x, strides, channel_axis, "strides", caller)
    return x, window, strides


def max_pool(value: jax.Array, window_shape: Size, strides: Size, padding: str,
             channel_axis: int | None = -1) -> jax.Array:
    """The maximum over each window.

    Args:
      value: the input, e.g. ``[N, H, W, C]``.
      window_shape: an int (every axis but batch and channel) or one per axis
        (leading axes may be left out).
      strides: as ``window_shape``.
      padding: ``"SAME"`` or ``"VALID"``.
      channel_axis: the axis an int size skips (``None``: none).

    Returns:
      The pooled array, same rank as ``value``.

    Example::

      y = mh.nn.max_pool(jnp.ones([2, 8, 8, 3]), 2, 2, "VALID")  # (2, 4, 4, 3)
    """
    return _max_pool(value, window_shape, strides, padding, channel_axis, "mh.nn.max_pool")


def _max_pool(value, window_shape, strides, padding, channel_axis, caller):
    x, window, strides = _prepare(value, window_shape, strides, padding, channel_axis, caller)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding)


def avg_pool(value: jax.Array, window_shape: Size, strides: Size, padding: str,
             channel_axis: int | None = -1) -> jax.Array:
    """The mean over each window (over its unpadded entries with ``"SAME"``).

    Arguments as :func:`max_pool`.

    Example::

      y = mh.nn.avg_pool(jnp.ones([2, 8, 8, 3]), 3, 1, "SAME")  # (2, 8, 8, 3), all 1.
    """
    return _avg_pool(value, window_shape, strides, padding, channel_axis, "mh.nn.avg_pool")


def _avg_pool(value, window_shape, strides, padding, channel_axis, caller):
    x, window, strides = _prepare(value, window_shape, strides, padding, channel_axis, caller)
    summed = jax.lax.reduce_window(x, 0., jax.lax.add, window, strides, padding)
    if padding == "VALID":
        return summed / math.prod(window)
    ones = jnp.ones([d if w != 1 else 1 for d, w in zip(x.shape, window, strict=True)], x.dtype)
    counts = jax.lax.reduce_window(ones, 0., jax.lax.add, window, strides, padding)
    return summed / counts


class _Pool(Module):

    def __init__(self, window_shape: Size, strides: Size, padding: str,
                 channel_axis: int | None = -1, name: str | None = None):
        super().__init__(name=name)
        if padding not in ("SAME", "VALID"):
            raise errors.InvalidArgumentError(
                f"{type(self).__name__} at '{self.module_path}' got padding={padding!r}. "
                "Fix: pass 'SAME' or 'VALID'.")
        self.window_shape = window_shape
        self.strides = strides
        self.padding = padding
        self.channel_axis = channel_axis


class MaxPool(_Pool):
    """:func:`max_pool` as a module (no params).

    Example::

      y = mh.transform(lambda x: mh.nn.MaxPool(2, 2, "VALID")(x)).apply(
          {}, None, jnp.ones([1, 4, 4, 1]))  # (1, 2, 2, 1)
    """

    def __call__(self, value: jax.Array) -> jax.Array:
        """Max-pools ``value``."""
        return _max_pool(value, self.window_shape, self.strides, self.padding,
                         self.channel_axis, f"MaxPool at '{self.module_path}'")


class AvgPool(_Pool):
    """:func:`avg_pool` as a module (no params).

    Example::

      y = mh.transform(lambda x: mh.nn.AvgPool(2, 2, "VALID")(x)).apply(
          {}, None, jnp.ones([1, 4, 4, 1]))  # (1, 2, 2, 1)
    """

    def __call__(self, value: jax.Array) -> jax.Array:
        """Average-pools ``value``."""
        return _avg_pool(value, self.window_shape, self.strides, self.padding,
                         self.channel_axis, f"AvgPool at '{self.module_path}'")
