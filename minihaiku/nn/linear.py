"""``Linear``: an affine layer ``x @ w + b``."""

import math
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.params import Initializer

_zeros = jax.nn.initializers.zeros


def _fan_in_truncated_normal(key, shape, dtype):
    # The default `w` init: truncated normal with stddev 1/sqrt(fan_in). Reading
    # fan_in from the shape keeps one module-level function for every layer, so
    # apply never builds an initializer it would not use.
    stddev = 1.0 / math.sqrt(shape[0])
    return jax.nn.initializers.truncated_normal(stddev)(key, shape, dtype)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


class Linear(Module):
    """An affine layer: ``x @ w + b`` over the last axis of ``x``.

    Params (under ``<module path>/__call__/``): ``w`` of shape ``[in, out]``,
    default truncated normal with stddev ``1/sqrt(in)``, and ``b`` of shape
    ``[out]``, default zeros. Params take the dtype of ``x``. ``input_size``
    is ``None`` until the layer is called, then the size of the input's last
    axis (as Haiku's; ``mh.nets.MLP.reverse`` reads it).

    Example::

      f = mh.transform(lambda x: mh.nn.Linear(3)(x))
      params = f.init(0, jnp.ones([2, 5]))  # '~/Linear_0/__call__/w': (5, 3)
    """

    def __init__(self, output_size: int, with_bias: bool = True,
                 w_init: Initializer | None = None,
                 b_init: Initializer | None = None,
                 precision: jax.lax.Precision | None = None,
                 name: str | None = None):
        """Builds the layer.

        Args:
          output_size: the size of the last axis of the output.
          with_bias: whether to add the bias ``b``.
          w_init: ``init(key, shape, dtype)`` for ``w``.
          b_init: ``init(key, shape, dtype)`` for ``b``.
          precision: passed to the matmul (``jnp.matmul``), e.g.
            ``jax.lax.Precision.HIGHEST``; default: JAX's default.
          name: module name, default ``Linear``.
        """
        super().__init__(name=name)
        if (not isinstance(output_size, int) or isinstance(output_size, bool)
                or output_size < 1):
            raise errors.ModuleInputError(
                f"Linear at '{self.module_path}' got output_size={output_size!r}; it "
                "must be a positive int (the size of the output's last axis). Fix: "
                f"e.g. Linear({max(1, _as_int(output_size))}).")
        if not with_bias and b_init is not None:
            raise errors.ModuleInputError(
                f"Linear at '{self.module_path}' got b_init but with_bias=False. "
                "Fix: drop b_init or set with_bias=True.")
        self.output_size = output_size
        self.with_bias = with_bias
        self.w_init = w_init or _fan_in_truncated_normal
        self.b_init = b_init or _zeros
        self.precision = precision
        self.input_size: int | None = None

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x @ w + b``, of shape ``x.shape[:-1] + (output_size,)``."""
        try:
            ndim = x.ndim
        except AttributeError:
            x = jnp.asarray(x)
            ndim = x.ndim
        if not ndim:
            raise errors.ModuleInputError(
                f"Linear at '{self.module_path}' got a scalar input; it needs "
                "shape [..., in]. Fix: pass x[None] or x.reshape(1, 1).")
        dtype = x.dtype
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise errors.ModuleInputError(
                f"Linear at '{self.module_path}' got an input of dtype {dtype} (shape "
                f"{x.shape}); params take the input's dtype, so it must be floating. "
                "Fix: cast first, e.g. x.astype(jnp.float32).")
        self.input_size = x.shape[-1]
        w = params_lib.get_param("w", (self.input_size, self.output_size), dtype,
                                 self.w_init)
        if self.precision is None:  # The hot path: exactly `x @ w + b`.
            y = x @ w
        else:
            y = jnp.matmul(x, w, precision=self.precision)
        if not self.with_bias:
            return y
        return y + params_lib.get_param("b", (self.output_size,), dtype, self.b_init)
