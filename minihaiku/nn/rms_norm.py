"""``RMSNorm``: scale each example by the root mean square over some axes."""


import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nn import _normalize
from minihaiku.nn._normalize import Axes
from minihaiku.params import Initializer


class RMSNorm(Module):
    """Root-mean-square normalisation, computing what Haiku's ``RMSNorm`` computes.

    ``y = scale * x / sqrt(mean(x², axis) + eps)``: no centering, no offset.
    ``scale`` (init ones, dtype of ``x``) has shape ``[x.shape[-1]]`` for the
    default ``param_axis=-1``, otherwise the input's sizes on ``param_axis``
    and 1 elsewhere.

    Example::

      f = mh.transform(lambda x: mh.nn.RMSNorm(-1)(x))
      params = f.init(0, jnp.ones([2, 8]))  # '~/RMSNorm_0/__call__/scale': (8,)
    """

    keeps_float32 = True  # statistics in low precision lose what they measure

    def __init__(self, axis: Axes = -1, eps: float = 1e-5, *,
                 scale_init: Initializer | None = None,
                 create_scale: bool = True,
                 param_axis: Axes | None = None,
                 name: str | None = None):
        """Builds the layer.

        Args:
          axis: the axis or axes (int, sequence of ints or slice) to average over.
          eps: added to the mean square.
          scale_init: ``init(key, shape, dtype)`` of ``scale`` (default ones).
          create_scale: learn a ``scale``.
          param_axis: the axes ``scale`` spans (default ``-1``).
          name: module name, default ``RMSNorm``.
        """
        super().__init__(name=name)
        self._where = where = f"{type(self).__name__} at '{self.module_path}'"
        self.axis = _normalize.check_axes(where, "axis", axis)
        self.param_axis = _normalize.check_axes(
            where, "param_axis", -1 if param_axis is None else param_axis)
        self.eps = eps
        self.create_scale = create_scale
        self.scale_init, _ = _normalize.scale_offset_inits(
            where, create_scale, False, scale_init, None)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x`` normalised, same shape and dtype."""
        x = jnp.asarray(x)
        where = self._where
        if not x.ndim:
            raise errors.ModuleInputError(
                f"{where} got a scalar input. Fix: pass an array of shape "
                "[..., channels].")
        axes = _normalize.abs_axes(self.axis, x.ndim, where)
        mean_square = jnp.mean(jnp.square(x), axis=axes, keepdims=True)
        out = x * jax.lax.rsqrt(mean_square + jnp.asarray(self.eps, x.dtype))
        if not self.create_scale:
            return out
        shape = _normalize.param_shape(
            x.shape, _normalize.abs_axes(self.param_axis, x.ndim, where))
        return params_lib.get_param("scale", shape, x.dtype, self.scale_init) * out
