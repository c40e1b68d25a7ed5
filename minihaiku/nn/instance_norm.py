"""``InstanceNorm``: normalise each example and channel over the spatial axes."""


from minihaiku.nn import _normalize
from minihaiku.nn.layer_norm import LayerNorm
from minihaiku.params import Initializer


class InstanceNorm(LayerNorm):
    """Instance normalisation, computing what Haiku's ``InstanceNorm`` computes.

    A ``LayerNorm`` over the spatial axes (all but batch and channels), i.e.
    ``GroupNorm`` with one group per channel. ``scale``/``offset`` are per
    channel, with Haiku's shapes: ``[C]`` channels-last, ``[1, C, 1, ..., 1]``
    (the input's rank) channels-first.

    Example::

      f = mh.transform(lambda x: mh.nn.InstanceNorm()(x))
      params = f.init(0, jnp.ones([1, 4, 4, 3]))  # scale, offset: (3,)
    """

    keeps_float32 = True  # statistics in low precision lose what they measure

    def __init__(self, create_scale: bool = True, create_offset: bool = True,
                 eps: float = 1e-5, *,
                 scale_init: Initializer | None = None,
                 offset_init: Initializer | None = None,
                 data_format: str = "channels_last",
                 name: str | None = None):
        """Builds the layer.

        Args:
          create_scale: learn a per-channel ``scale``.
          create_offset: learn a per-channel ``offset``.
          eps: added to the variance.
          scale_init: ``init(key, shape, dtype)`` of ``scale`` (default ones).
          offset_init: ``init(key, shape, dtype)`` of ``offset`` (default zeros).
          data_format: ``"channels_last"`` (``N...C``) or ``"channels_first"``
            (``NC...``).
          name: module name, default ``InstanceNorm``.
        """
        # Build first so that an unknown data_format is refused naming the path.
        ci = _normalize.DATA_FORMATS.get(data_format, -1)
        super().__init__(slice(1, -1) if ci == -1 else slice(2, None),
                         create_scale, create_offset, eps, scale_init=scale_init,
                         offset_init=offset_init, param_axis=ci, name=name)
        _normalize.channel_index(data_format, self._where)
        self.data_format = data_format
