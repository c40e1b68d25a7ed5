"""``DepthwiseConv2D``: each input channel convolved on its own.

A ``ConvND`` with ``feature_group_count`` equal to the input channels:
``w`` ``[kh, kw, 1, in * channel_multiplier]``, ``b`` ``[in *
channel_multiplier]`` (``[..., 1, 1]`` channels-first), Haiku's layout.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nn import _conv_args as args
from minihaiku.nn import _layer_args
from minihaiku.params import Initializer


class DepthwiseConv2D(Module):
    """A depthwise 2D convolution, the same function as Haiku's ``DepthwiseConv2D``.

    Output channel ``c * channel_multiplier + m`` is input channel ``c``
    convolved with kernel ``w[..., 0, c * channel_multiplier + m]``.

    Example::

      f = mh.transform(lambda x: mh.nn.DepthwiseConv2D(2, 3)(x))
      y = f.apply(f.init(0, jnp.ones([1, 6, 6, 4])), None, jnp.ones([1, 6, 6, 4]))  # (1, 6, 6, 8)
    """

    def __init__(self, channel_multiplier: int, kernel_shape: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: args.Padding = "SAME",
                 rate: int | Sequence[int] = 1, with_bias: bool = True,
                 w_init: Initializer | None = None,
                 b_init: Initializer | None = None,
                 data_format: str = "NHWC", name: str | None = None):
        """Builds the layer.

        Args:
          channel_multiplier: output channels per input channel.
          kernel_shape: an int or ``(kh, kw)``.
          stride: an int or ``(sh, sw)``.
          padding: as :class:`ConvND`.
          rate: kernel dilation, an int or ``(rh, rw)``.
          with_bias: whether to add ``b``.
          w_init: ``init(key, shape, dtype)`` of ``w`` (default fan-in
            truncated normal, stddev ``1/sqrt(kh * kw)``).
          b_init: ``init(key, shape, dtype)`` of ``b``.
          data_format: ``"NHWC"`` (default) or ``"NCHW"``.
          name: module name, default ``DepthwiseConv2D``.
        """
        super().__init__(name=name)
        self.channel_multiplier = _layer_args.positive_int(
            self, channel_multiplier, "channel_multiplier", 2)
        self.kernel_shape = args.replicate(self, kernel_shape, 2, "kernel_shape")
        self.stride = args.replicate(self, stride, 2, "stride")
        self.rate = args.replicate(self, rate, 2, "rate")
        self.padding = args.resolve_padding(self, padding, self.kernel_shape, self.rate)
        _layer_args.check_bias_init(self, with_bias, b_init)
        self.channels_last, self.data_format = args.channels_last(self, data_format, 2)
        self.with_bias = with_bias
        self.w_init = w_init or _layer_args.fan_in_truncated_normal  # fan_in: kh * kw
        self.b_init = b_init or _layer_args.zeros
        self._dn = args.dimension_numbers(2, self.channels_last, transpose=False)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Convolves ``x`` ``[N, H, W, C]`` to ``[N, H', W', C * channel_multiplier]``."""
        x = jnp.asarray(x)
        x, _ = args.check_input(self, x, 2, batched_only=True)
        c = x.shape[-1 if self.channels_last else 1]
        out = c * self.channel_multiplier
        w = params_lib.get_param("w", self.kernel_shape + (1, out), x.dtype, self.w_init)
        y = jax.lax.conv_general_dilated(
            x, w, self.stride, self.padding, rhs_dilation=self.rate,
            dimension_numbers=self._dn, feature_group_count=c)
        if self.with_bias:
            b_shape = (out,) if self.channels_last else (out, 1, 1)
            y = y + params_lib.get_param("b", b_shape, x.dtype, self.b_init)
        return y
