"""``Reshape`` and ``Flatten``: reshape all but the leading (batch) dims."""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn import _layer_args


class Reshape(Module):
    """Reshapes the dims after the first ``preserve_dims`` to ``output_shape``.

    One ``-1`` in ``output_shape`` is inferred. A negative ``preserve_dims``
    counts from the end: the last ``-preserve_dims`` dims are reshaped. An
    input of rank ``<= preserve_dims`` is returned as is (Haiku's rule).

    Example::

      y = mh.transform(lambda x: mh.nn.Reshape((4, -1))(x)).apply(
          {}, None, jnp.ones([2, 3, 8]))  # (2, 4, 6)
    """

    def __init__(self, output_shape: Sequence[int], preserve_dims: int = 1,
                 name: str | None = None):
        """Builds the layer.

        Args:
          output_shape: the new shape of the reshaped dims; at most one ``-1``.
          preserve_dims: leading dims kept (negative: trailing dims reshaped).
          name: module name, default the class name.
        """
        super().__init__(name=name)
        shape = tuple(output_shape)
        if not _layer_args.is_int(preserve_dims) or preserve_dims == 0:
            raise errors.InvalidArgumentError(
                f"{type(self).__name__} at '{self.module_path}' got preserve_dims="
                f"{preserve_dims!r}; it must be a non-zero int. Fix: e.g. 1 to keep "
                "the batch dim.")
        if shape.count(-1) > 1 or not all(_layer_args.is_int(d) and d >= -1 for d in shape):
            raise errors.InvalidArgumentError(
                f"{type(self).__name__} at '{self.module_path}' got output_shape="
                f"{shape}; it needs sizes >= 0 and at most one -1. Fix: e.g. (4, -1).")
        self.output_shape = shape
        self.preserve_dims = preserve_dims

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x`` reshaped to ``x.shape[:preserve_dims] + output_shape``."""
        x = jnp.asarray(x)
        if x.ndim <= self.preserve_dims:
            return x
        kept, moved = x.shape[:self.preserve_dims], x.shape[self.preserve_dims:]
        shape = self.output_shape
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            if known == 0 or math.prod(moved) % known:
                raise errors.ModuleInputError(
                    f"{type(self).__name__} at '{self.module_path}' cannot reshape dims "
                    f"{moved} of shape {x.shape} to {shape}: {math.prod(moved)} entries "
                    f"are not a multiple of {known}. Fix: check output_shape.")
            shape = tuple(math.prod(moved) // known if d == -1 else d for d in shape)
        elif math.prod(shape) != math.prod(moved):
            raise errors.ModuleInputError(
                f"{type(self).__name__} at '{self.module_path}' cannot reshape dims "
                f"{moved} of shape {x.shape} ({math.prod(moved)} entries) to {shape}. "
                "Fix: check output_shape and preserve_dims.")
        return jnp.reshape(x, kept + shape)


class Flatten(Reshape):
    """Flattens every dim after the first ``preserve_dims`` into one.

    Example::

      y = mh.transform(lambda x: mh.nn.Flatten()(x)).apply(
          {}, None, jnp.ones([2, 3, 4]))  # (2, 12)
    """

    def __init__(self, preserve_dims: int = 1, name: str | None = None):
        """Builds the layer: ``preserve_dims`` leading dims are kept (negative:
        the last ``-preserve_dims`` dims are flattened)."""
        super().__init__((-1,), preserve_dims, name=name)
