"""``LayerNorm``: normalise each example over some of its axes."""


import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn import _normalize
from minihaiku.nn._normalize import Axes
from minihaiku.params import Initializer


class LayerNorm(Module):
    """Layer normalisation, computing what Haiku's ``LayerNorm`` computes.

    ``y = scale * (x - mean) / sqrt(var + eps) + offset`` with the mean and
    (biased) variance over ``axis``. ``scale`` (init ones) and ``offset``
    (init zeros) take the dtype of ``x`` and their shape from ``param_axis``
    as in Haiku: ``[x.shape[-1]]`` for the default ``-1``, otherwise the
    input's sizes on ``param_axis`` and 1 elsewhere (e.g. ``[1, C, 1, 1]``).

    Example::

      f = mh.transform(lambda x: mh.nn.LayerNorm()(x))
      params = f.init(0, jnp.ones([2, 8]))  # '~/LayerNorm_0/__call__/scale': (8,)
    """

    keeps_float32 = True  # statistics in low precision lose what they measure

    def __init__(self, axis: Axes = -1, create_scale: bool = True,
                 create_offset: bool = True, eps: float = 1e-5, *,
                 scale_init: Initializer | None = None,
                 offset_init: Initializer | None = None,
                 use_fast_variance: bool = False,
                 param_axis: Axes | None = None,
                 name: str | None = None):
        """Builds the layer.

        Args:
          axis: the axis or axes (int, sequence of ints or slice) to normalise over.
          create_scale: learn a ``scale``.
          create_offset: learn an ``offset``.
          eps: added to the variance.
          scale_init: ``init(key, shape, dtype)`` of ``scale`` (default ones).
          offset_init: ``init(key, shape, dtype)`` of ``offset`` (default zeros).
          use_fast_variance: compute the variance as ``E[x²] - E[x]²`` (one
            pass, as Haiku's flag; loses precision when ``|mean| >> std``).
          param_axis: the axes the params span (default ``-1``).
          name: module name, default ``LayerNorm``.
        """
        super().__init__(name=name)
        self._where = where = f"{type(self).__name__} at '{self.module_path}'"
        self.axis = _normalize.check_axes(where, "axis", axis)
        self.param_axis = _normalize.check_axes(
            where, "param_axis", -1 if param_axis is None else param_axis)
        _normalize.check_flags(where, use_fast_variance=use_fast_variance)
        self.create_scale = create_scale
        self.create_offset = create_offset
        self.eps = eps
        self.use_fast_variance = use_fast_variance
        self.scale_init, self.offset_init = _normalize.scale_offset_inits(
            where, create_scale, create_offset, scale_init, offset_init)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x`` normalised, same shape and dtype."""
        x = jnp.asarray(x)
        where = self._where
        if not x.ndim:
            raise errors.ModuleInputError(
                f"{where} got a scalar input. Fix: pass an array of shape "
                "[..., channels].")
        axes = _normalize.abs_axes(self.axis, x.ndim, where)
        mean = jnp.mean(x, axis=axes, keepdims=True)
        if self.use_fast_variance:
            var = jnp.mean(jnp.square(x), axis=axes, keepdims=True) - jnp.square(mean)
        else:
            var = jnp.var(x, axis=axes, keepdims=True)
        shape = _normalize.param_shape(
            x.shape, _normalize.abs_axes(self.param_axis, x.ndim, where))
        return _normalize.normalize(self, x, mean, var, shape, x.dtype)
