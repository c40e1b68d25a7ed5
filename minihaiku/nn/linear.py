"""``Linear``: an affine layer ``x @ w + b``."""

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nn import _layer_args
from minihaiku.params import Initializer


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
        self.output_size = _layer_args.positive_int(self, output_size, "output_size")
        _layer_args.check_bias_init(self, with_bias, b_init)
        self.with_bias = with_bias
        self.w_init = w_init or _layer_args.fan_in_truncated_normal
        self.b_init = b_init or _layer_args.zeros
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
            raise _layer_args.not_floating(self, x)
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
