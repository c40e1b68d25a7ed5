"""``ConvND`` and ``Conv1D``/``Conv2D``/``Conv3D``: convolutions over spatial dims.

``y = conv_general_dilated(x, w * mask) + b`` with ``w`` ``[*kernel, in / groups,
out]`` and ``b`` ``[out]`` (``[out, 1, ..., 1]`` channels-first): Haiku's
layout and numbers.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nn import _conv_args as args
from minihaiku.nn import _layer_args
from minihaiku.params import Initializer


class ConvND(Module):
    """An N-dimensional convolution, the same function as Haiku's ``ConvND``.

    Params (under ``<module path>/__call__/``): ``w`` ``[*kernel_shape, in //
    feature_group_count, output_channels]`` (default truncated normal, stddev
    ``1/sqrt(fan_in)``) and ``b`` ``[output_channels]`` (``[output_channels, 1,
    ...]`` channels-first; default zeros). Params take the dtype of ``x``.

    Example::

      f = mh.transform(lambda x: mh.nn.ConvND(2, 8, 3)(x))
      params = f.init(0, jnp.ones([1, 5, 5, 3]))  # w: (3, 3, 3, 8), b: (8,)
    """

    def __init__(self, num_spatial_dims: int, output_channels: int,
                 kernel_shape: int | Sequence[int],
                 stride: int | Sequence[int] = 1,
                 rate: int | Sequence[int] = 1,
                 padding: args.Padding = "SAME", with_bias: bool = True,
                 w_init: Initializer | None = None,
                 b_init: Initializer | None = None,
                 data_format: str | None = None,
                 mask: jax.Array | None = None,
                 feature_group_count: int = 1, name: str | None = None):
        """Builds the convolution.

        Args:
          num_spatial_dims: number of spatial dims (1, 2, 3, ...).
          output_channels: number of output channels.
          kernel_shape: kernel size, an int or one per spatial dim.
          stride: window stride, an int or one per spatial dim.
          rate: kernel dilation, an int or one per spatial dim.
          padding: ``"SAME"``, ``"VALID"``, a ``(lo, hi)`` pair (every dim), one
            pair per dim, or a callable (or one per dim) mapping the effective
            kernel size ``(k - 1) * rate + 1`` to ``(lo, hi)``.
          with_bias: whether to add ``b``.
          w_init: ``init(key, shape, dtype)`` of ``w``.
          b_init: ``init(key, shape, dtype)`` of ``b``.
          data_format: channels-last (``"NWC"``/``"NHWC"``/``"NDHWC"``, the
            default) or channels-first (``"NCW"``/``"NCHW"``/``"NCDHW"``).
          mask: optional array of ``w``'s shape, multiplied into ``w``.
          feature_group_count: split the channels into this many groups
            convolved separately; must divide in and output channels.
          name: module name, default the class name.
        """
        super().__init__(name=name)
        n = _layer_args.positive_int(self, num_spatial_dims, "num_spatial_dims", 2)
        self.num_spatial_dims = n
        self.output_channels = _layer_args.positive_int(self, output_channels,
                                                        "output_channels")
        self.kernel_shape = args.replicate(self, kernel_shape, n, "kernel_shape")
        self.stride = args.replicate(self, stride, n, "stride")
        self.rate = args.replicate(self, rate, n, "rate")
        self.padding = args.resolve_padding(self, padding, self.kernel_shape, self.rate)
        self.feature_group_count = _layer_args.positive_int(
            self, feature_group_count, "feature_group_count", 2)
        if output_channels % feature_group_count:
            raise errors.InvalidArgumentError(
                f"{args.where(self)}: feature_group_count={feature_group_count} does not "
                f"divide output_channels={output_channels}. Fix: pick a "
                "feature_group_count dividing both the input and output channels.")
        layout = args.layout(self, n, output_channels, with_bias, b_init, data_format,
                             transpose=False)
        self.channels_last, self.data_format = layout.channels_last, layout.data_format
        self.with_bias = with_bias
        self._dn, self._b_shape = layout.dimension_numbers, layout.bias_shape
        # fan_in = prod(kernel) * in / groups, all of w's axes but the last.
        self.w_init = w_init or _layer_args.fan_in_truncated_normal
        self.b_init = b_init or _layer_args.zeros
        self.mask = mask

    def __call__(self, x: jax.Array, *,
                 precision: jax.lax.Precision | None = None) -> jax.Array:
        """Convolves ``x`` ``[N, *spatial, C]`` (or unbatched ``[*spatial, C]``).

        Args:
          x: the input, channels where ``data_format`` says.
          precision: passed to ``jax.lax.conv_general_dilated``.

        Returns:
          ``[N, *out_spatial, output_channels]`` (unbatched if ``x`` was).
        """
        x = jnp.asarray(x)
        x, unbatched = args.check_input(self, x, self.num_spatial_dims)
        c = x.shape[-1 if self.channels_last else 1]
        if c % self.feature_group_count:
            raise errors.ModuleInputError(
                f"{args.where(self)}: feature_group_count={self.feature_group_count} "
                f"does not divide the {c} input channels of shape {x.shape} "
                f"(data_format {self.data_format!r}). Fix: pick a feature_group_count "
                "dividing both the input and output channels, or check data_format.")
        w_shape = self.kernel_shape + (c // self.feature_group_count, self.output_channels)
        w = params_lib.get_param("w", w_shape, x.dtype, self.w_init)
        if self.mask is not None:
            if jnp.shape(self.mask) != w_shape:
                raise errors.ModuleInputError(
                    f"{args.where(self)} got a mask of shape {jnp.shape(self.mask)}; it "
                    f"must have w's shape {w_shape}. Fix: build the mask for that shape.")
            w = w * self.mask
        y = jax.lax.conv_general_dilated(
            x, w, self.stride, self.padding, rhs_dilation=self.rate,
            dimension_numbers=self._dn, feature_group_count=self.feature_group_count,
            precision=precision)
        if self.with_bias:
            y = y + params_lib.get_param("b", self._b_shape, x.dtype, self.b_init)
        return y[0] if unbatched else y


class Conv1D(ConvND):
    """A 1D convolution over ``[N, W, C]`` (``data_format`` default ``"NWC"``).

    Example::

      f = mh.transform(lambda x: mh.nn.Conv1D(4, kernel_shape=3)(x))
      y = f.apply(f.init(0, jnp.ones([2, 10, 3])), None, jnp.ones([2, 10, 3]))  # (2, 10, 4)
    """
    __init__ = args.fixed_dims(ConvND, 1)


class Conv2D(ConvND):
    """A 2D convolution over ``[N, H, W, C]`` (``data_format`` default ``"NHWC"``).

    Example::

      f = mh.transform(lambda x: mh.nn.Conv2D(16, 3, stride=2)(x))
      y = f.apply(f.init(0, jnp.ones([2, 8, 8, 3])), None, jnp.ones([2, 8, 8, 3]))  # (2, 4, 4, 16)
    """
    __init__ = args.fixed_dims(ConvND, 2)


class Conv3D(ConvND):
    """A 3D convolution over ``[N, D, H, W, C]`` (``data_format`` default ``"NDHWC"``).

    Example::

      f = mh.transform(lambda x: mh.nn.Conv3D(4, 3, padding="VALID")(x))
      y = f.apply(f.init(0, jnp.ones([1, 5, 5, 5, 2])), None, jnp.ones([1, 5, 5, 5, 2]))
    """
    __init__ = args.fixed_dims(ConvND, 3)
