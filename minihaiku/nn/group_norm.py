"""``GroupNorm``: normalise each example over groups of channels."""


import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn import _layer_args, _normalize
from minihaiku.nn._normalize import Axes
from minihaiku.params import Initializer


class GroupNorm(Module):
    """Group normalisation, computing what Haiku's ``GroupNorm`` computes.

    The channels are split into ``groups`` groups of ``C // groups``; each
    example is normalised with the mean and variance over its group and the
    other axes in ``axis`` (default: all but the batch axis). ``axis`` counts
    the input's axes, the channel axis standing for "within the group"
    (negative axes count from the input's end; Haiku shifts them as if they
    were non-negative, so pass non-negative axes to compare with Haiku).
    ``scale`` (ones) and ``offset`` (zeros) are per channel: shape ``[C]``
    channels-last, ``[C, 1, ..., 1]`` (rank - 1) channels-first, as in Haiku.

    Example::

      f = mh.transform(lambda x: mh.nn.GroupNorm(2)(x))
      params = f.init(0, jnp.ones([1, 4, 4, 6]))  # scale, offset: (6,)
    """

    keeps_float32 = True  # statistics in low precision lose what they measure

    def __init__(self, groups: int, axis: Axes = slice(1, None),
                 create_scale: bool = True, create_offset: bool = True,
                 eps: float = 1e-5, *,
                 scale_init: Initializer | None = None,
                 offset_init: Initializer | None = None,
                 data_format: str = "channels_last",
                 name: str | None = None):
        """Builds the layer.

        Args:
          groups: how many groups the channels are split into; must divide C.
          axis: the input axes to normalise over (the batch axis 0 excluded).
          create_scale: learn a per-channel ``scale``.
          create_offset: learn a per-channel ``offset``.
          eps: added to the variance.
          scale_init: ``init(key, shape, dtype)`` of ``scale`` (default ones).
          offset_init: ``init(key, shape, dtype)`` of ``offset`` (default zeros).
          data_format: ``"channels_last"`` (``N...C``) or ``"channels_first"``
            (``NC...``).
          name: module name, default ``GroupNorm``.
        """
        super().__init__(name=name)
        self._where = where = f"{type(self).__name__} at '{self.module_path}'"
        self.groups = _layer_args.positive_int(self, groups, "groups", 32)
        self.axis = _normalize.check_axes(where, "axis", axis)
        self.channel_index = _normalize.channel_index(data_format, where)
        self.data_format = data_format
        self.create_scale = create_scale
        self.create_offset = create_offset
        self.eps = eps
        self.scale_init, self.offset_init = _normalize.scale_offset_inits(
            where, create_scale, create_offset, scale_init, offset_init)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x`` normalised, same shape and dtype."""
        x = jnp.asarray(x)
        where = self._where
        if x.ndim < 2:
            raise errors.ModuleInputError(
                f"{where} got an input of shape {x.shape}; it needs "
                "[batch, ..., channels] (or [batch, channels, ...] channels-first). "
                "Fix: add a batch axis, e.g. x[None].")
        ci = self.channel_index % x.ndim
        channels = x.shape[ci]
        if channels % self.groups:
            raise errors.ModuleInputError(
                f"{where}: groups={self.groups} does not divide the {channels} "
                f"channels of the input of shape {x.shape} ({self.data_format}). "
                "Fix: pick groups that divide the channel count, or check "
                "data_format.")
        axes = _normalize.abs_axes(self.axis, x.ndim, where)
        # The channel axis splits into (group, within-group); an axis after it
        # moves one to the right, the channel axis itself means within-group.
        grouped = x.reshape(x.shape[:ci] + (self.groups, channels // self.groups)
                            + x.shape[ci + 1:])
        gaxes = tuple(a if a < ci else a + 1 for a in axes)
        mean = jnp.mean(grouped, gaxes, keepdims=True)
        var = jnp.var(grouped, gaxes, keepdims=True)
        x = ((grouped - mean) * jax.lax.rsqrt(var + jnp.asarray(self.eps, var.dtype))
             ).reshape(x.shape)
        shape = (channels,) if ci == x.ndim - 1 else (channels,) + (1,) * (x.ndim - 2)
        return _normalize.affine(self, x, shape)
