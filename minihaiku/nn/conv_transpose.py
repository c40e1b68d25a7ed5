"""``ConvNDTranspose`` and ``Conv{1,2,3}DTranspose``: transposed convolutions.

``y = conv_transpose(x, w * mask) + b`` with ``w`` ``[*kernel, out, in]`` and
``b`` ``[out]`` (``[out, 1, ..., 1]`` channels-first): Haiku's layout and
numbers, including its ``output_shape`` padding rule.
"""

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nn import _conv_args as args
from minihaiku.nn import _layer_args
from minihaiku.params import Initializer


def _fan_in_truncated_normal(key, shape, dtype):
    # w is [*kernel, out, in]: fan_in = prod(kernel) * in, as Haiku.
    stddev = 1.0 / math.sqrt(math.prod(shape[:-2]) * shape[-1])
    return _layer_args.truncated_normal(stddev, key, shape, dtype)


def _output_padding(module: Any, size: int, out: int, k: int, s: int,
                    padding: str) -> tuple[int, int]:
    # The (lo, hi) padding that makes the transpose produce `out` elements
    # from `size`, valid only when a forward conv of `out` gives `size`.
    expected = (out - k + s) // s if padding == "VALID" else (out + s - 1) // s
    if size != expected:
        raise errors.ModuleInputError(
            f"{args.where(module)}: output_shape size {out} needs an input size of "
            f"{expected} with kernel {k}, stride {s} and padding {padding!r}, but the "
            f"input has {size}. Fix: change output_shape or the input's spatial size.")
    before = 0 if padding == "VALID" else max(0, (size - 1) * s + k - out) // 2
    lo = k - 1 - before
    return lo, out + k - 1 - ((size - 1) * s + 1) - lo


class ConvNDTranspose(Module):
    """An N-dimensional transposed convolution, the same function as Haiku's.

    Params (under ``<module path>/__call__/``): ``w`` ``[*kernel_shape,
    output_channels, in]`` (default truncated normal, stddev
    ``1/sqrt(prod(kernel_shape) * in)``) and ``b`` ``[output_channels]``.

    Example::

      f = mh.transform(lambda x: mh.nn.ConvNDTranspose(2, 4, 3, stride=2)(x))
      y = f.apply(f.init(0, jnp.ones([1, 4, 4, 3])), None, jnp.ones([1, 4, 4, 3]))  # (1, 8, 8, 4)
    """

    def __init__(self, num_spatial_dims: int, output_channels: int,
                 kernel_shape: int | Sequence[int],
                 stride: int | Sequence[int] = 1,
                 output_shape: int | Sequence[int] | None = None,
                 padding: str | Sequence[tuple[int, int]] = "SAME",
                 with_bias: bool = True, w_init: Initializer | None = None,
                 b_init: Initializer | None = None,
                 data_format: str | None = None,
                 mask: jax.Array | None = None, name: str | None = None):
        """Builds the transposed convolution.

        Args:
          num_spatial_dims: number of spatial dims.
          output_channels: number of output channels.
          kernel_shape: kernel size, an int or one per spatial dim.
          stride: an int or one per spatial dim (the upsampling factor).
          output_shape: optional spatial output size (an int or one per dim);
            needs ``padding`` ``"SAME"`` or ``"VALID"``.
          padding: ``"SAME"``, ``"VALID"`` or ``(lo, hi)`` pairs.
          with_bias: whether to add ``b``.
          w_init: ``init(key, shape, dtype)`` of ``w``.
          b_init: ``init(key, shape, dtype)`` of ``b``.
          data_format: channels-last (default) or channels-first, as ``ConvND``.
          mask: optional array of ``w``'s shape, multiplied into ``w``.
          name: module name, default the class name.
        """
        super().__init__(name=name)
        n = _layer_args.positive_int(self, num_spatial_dims, "num_spatial_dims", 2)
        self.num_spatial_dims = n
        self.output_channels = _layer_args.positive_int(self, output_channels,
                                                        "output_channels")
        self.kernel_shape = args.replicate(self, kernel_shape, n, "kernel_shape")
        self.stride = args.replicate(self, stride, n, "stride")
        self.padding = args.resolve_padding(self, padding, self.kernel_shape, (1,) * n,
                                            allow_callable=False)
        self.output_shape = None
        if output_shape is not None:
            self.output_shape = args.replicate(self, output_shape, n, "output_shape")
            if not isinstance(self.padding, str):
                raise errors.InvalidArgumentError(
                    f"{args.where(self)} got output_shape with explicit padding "
                    f"{padding!r}. Fix: use padding 'SAME' or 'VALID' with output_shape.")
        layout = args.layout(self, n, output_channels, with_bias, b_init, data_format,
                             transpose=True)
        self.channels_last, self.data_format = layout.channels_last, layout.data_format
        self.with_bias = with_bias
        self._dn, self._b_shape = layout.dimension_numbers, layout.bias_shape
        self.w_init = w_init or _fan_in_truncated_normal
        self.b_init = b_init or _layer_args.zeros
        self.mask = mask

    def __call__(self, x: jax.Array, *,
                 precision: jax.lax.Precision | None = None) -> jax.Array:
        """Transposed-convolves ``x`` ``[N, *spatial, C]`` (or unbatched).

        Args:
          x: the input, channels where ``data_format`` says.
          precision: passed to ``jax.lax.conv_transpose``.

        Returns:
          ``[N, *out_spatial, output_channels]`` (unbatched if ``x`` was).
        """
        x = jnp.asarray(x)
        x, unbatched = args.check_input(self, x, self.num_spatial_dims)
        c = x.shape[-1 if self.channels_last else 1]
        w_shape = self.kernel_shape + (self.output_channels, c)
        w = params_lib.get_param("w", w_shape, x.dtype, self.w_init)
        if self.mask is not None:
            if jnp.shape(self.mask) != w_shape:
                raise errors.ModuleInputError(
                    f"{args.where(self)} got a mask of shape {jnp.shape(self.mask)}; it "
                    f"must have w's shape {w_shape}. Fix: build the mask for that shape.")
            w = w * self.mask
        padding = self.padding
        # __init__ allows output_shape only with 'SAME'/'VALID' padding.
        if self.output_shape is not None and isinstance(self.padding, str):
            sizes = x.shape[1:-1] if self.channels_last else x.shape[2:]
            padding = tuple(
                _output_padding(self, i, o, k, s, self.padding) for i, o, k, s in
                zip(sizes, self.output_shape, self.kernel_shape, self.stride, strict=True))
        y = jax.lax.conv_transpose(x, w, self.stride, padding, dimension_numbers=self._dn,
                                   precision=precision)
        if self.with_bias:
            y = y + params_lib.get_param("b", self._b_shape, x.dtype, self.b_init)
        return y[0] if unbatched else y


class Conv1DTranspose(ConvNDTranspose):
    """A 1D transposed convolution over ``[N, W, C]``.

    Example::

      f = mh.transform(lambda x: mh.nn.Conv1DTranspose(4, 3, stride=2)(x))
      y = f.apply(f.init(0, jnp.ones([2, 5, 3])), None, jnp.ones([2, 5, 3]))  # (2, 10, 4)
    """
    __init__ = args.fixed_dims(ConvNDTranspose, 1)


class Conv2DTranspose(ConvNDTranspose):
    """A 2D transposed convolution over ``[N, H, W, C]``.

    Example::

      f = mh.transform(lambda x: mh.nn.Conv2DTranspose(4, 3, stride=2)(x))
      y = f.apply(f.init(0, jnp.ones([2, 5, 5, 3])), None, jnp.ones([2, 5, 5, 3]))
    """
    __init__ = args.fixed_dims(ConvNDTranspose, 2)


class Conv3DTranspose(ConvNDTranspose):
    """A 3D transposed convolution over ``[N, D, H, W, C]``.

    Example::

      f = mh.transform(lambda x: mh.nn.Conv3DTranspose(2, 2, stride=2)(x))
      y = f.apply(f.init(0, jnp.ones([1, 3, 3, 3, 1])), None, jnp.ones([1, 3, 3, 3, 1]))
    """
    __init__ = args.fixed_dims(ConvNDTranspose, 3)
