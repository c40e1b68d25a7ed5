"""``Bias``: a learned bias added over chosen dims of the input."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.params import Initializer

_zeros = jax.nn.initializers.zeros


class Bias(Module):
    """Adds ``b`` (times ``multiplier``) to ``x`` ``[batch, ...]``, as Haiku's ``Bias``.

    ``b`` covers ``bias_dims`` of the input (default: every dim but the
    first); other dims broadcast, and leading dims of size 1 are dropped from
    ``b``'s shape, as Haiku does (``bias_dims=[1]`` on ``[B, H, W, C]`` gives
    ``b`` ``[H, 1, 1]``).

    Example::

      f = mh.transform(lambda x: mh.nn.Bias(bias_dims=[-1])(x))
      params = f.init(0, jnp.ones([2, 3, 4]))  # '~/Bias_0/__call__/b': (4,)
    """

    def __init__(self, output_size: Sequence[int] | None = None,
                 bias_dims: Sequence[int] | None = None,
                 b_init: Initializer | None = None, name: str | None = None):
        """Builds the layer.

        Args:
          output_size: the expected input shape without batch (checked), or None.
          bias_dims: the dims ``b`` covers (never 0, the batch); ``[]`` gives a
            scalar ``b``; default every dim but the first.
          b_init: ``init(key, shape, dtype)`` of ``b``, default zeros.
          name: module name, default ``Bias``.
        """
        super().__init__(name=name)
        self.output_size = None if output_size is None else tuple(output_size)
        self.bias_dims = None if bias_dims is None else tuple(bias_dims)
        self.b_init = b_init or _zeros

    def _shape(self, shape: Any) -> tuple:
        rank = len(shape)
        if self.bias_dims is None:
            return tuple(shape[1:])
        full = [1] * rank
        for d in self.bias_dims:
            if not isinstance(d, int) or not -rank <= d < rank or d % rank == 0:
                raise errors.ModuleInputError(
                    f"Bias at '{self.module_path}' got bias_dims={self.bias_dims} for "
                    f"an input of shape {shape}; each dim must be in [1, {rank}) (or "
                    f"negative), never the batch dim 0. Fix: e.g. bias_dims=[-1].")
            full[d % rank] = shape[d % rank]
        start = next((i for i in range(1, rank) if full[i] != 1), rank)
        return tuple(full[start:])

    def __call__(self, x: jax.Array, multiplier: jax.typing.ArrayLike | None = None) -> jax.Array:
        """Returns ``x + b`` (``x + b * multiplier`` if given)."""
        x = jnp.asarray(x)
        if x.ndim < 2:
            raise errors.ModuleInputError(
                f"Bias at '{self.module_path}' got shape {x.shape}; it needs rank >= 2 "
                "([batch, ...]). Fix: add a batch axis, x[None].")
        if self.output_size is not None and self.output_size != x.shape[1:]:
            raise errors.ModuleInputError(
                f"Bias at '{self.module_path}' (output_size={self.output_size}) got "
                f"shape {x.shape}; it needs (batch,) + {self.output_size}. Fix: check "
                "the input, or drop output_size.")
        b = params_lib.get_param("b", self._shape(x.shape), x.dtype, self.b_init)
        if multiplier is not None:
            b = b * multiplier
        return x + b
