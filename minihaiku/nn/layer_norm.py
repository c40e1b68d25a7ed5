"""``LayerNorm``: normalise each example over some of its axes."""

from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn import _normalize
from minihaiku.params import Initializer

Axes = Union[int, Sequence[int], slice]


def _abs_axes(axis: Axes, ndim: int, where: str) -> tuple:
    if isinstance(axis, slice):
        return tuple(range(ndim)[axis])
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise errors.MiniHaikuError(
                f"{where}: axis {a} is out of range for an input of rank {ndim}. "
                "Fix: pass axes that exist in the input, e.g. axis=-1.")
    return tuple(sorted(a % ndim for a in axes))


class LayerNorm(Module):
    """Layer normalisation, computing what Haiku's ``LayerNorm`` computes.

    ``y = scale * (x - mean) / sqrt(var + eps) + offset`` with the mean and
    (biased) variance over ``axis``. ``scale`` (init ones) and ``offset``
    (init zeros) have shape ``[x.shape[-1]]`` (Haiku's default
    ``param_axis=-1``) and the dtype of ``x``.

    Example::

      f = mh.transform(lambda x: mh.nn.LayerNorm()(x))
      params = f.init(0, jnp.ones([2, 8]))  # '~/LayerNorm_0/__call__/scale': (8,)
    """

    def __init__(self, axis: Axes = -1, create_scale: bool = True,
                 create_offset: bool = True, eps: float = 1e-5,
                 scale_init: Optional[Initializer] = None,
                 offset_init: Optional[Initializer] = None,
                 name: Optional[str] = None):
        """Builds the layer.

        Args:
          axis: the axis or axes (int, sequence or slice) to normalise over.
          create_scale: learn a per-channel ``scale``.
          create_offset: learn a per-channel ``offset``.
          eps: added to the variance.
          scale_init: ``init(key, shape, dtype)`` of ``scale`` (default ones).
          offset_init: ``init(key, shape, dtype)`` of ``offset`` (default zeros).
          name: module name, default ``LayerNorm``.
        """
        super().__init__(name=name)
        self.axis = axis
        self.create_scale = create_scale
        self.create_offset = create_offset
        self.eps = eps
        self.scale_init, self.offset_init = _normalize.scale_offset_inits(
            f"LayerNorm at '{self.module_path}'", create_scale, create_offset,
            scale_init, offset_init)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x`` normalised, same shape and dtype."""
        x = jnp.asarray(x)
        if not x.ndim:
            raise errors.MiniHaikuError(
                f"LayerNorm at '{self.module_path}' got a scalar input. Fix: "
                "pass an array of shape [..., channels].")
        axes = _abs_axes(self.axis, x.ndim, f"LayerNorm at '{self.module_path}'")
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        return _normalize.normalize(self, x, mean, var, (x.shape[-1],), x.dtype)
