"""``HeadsLinear``: attention's projections, a ``Linear`` that keeps the heads axis.

Same params and same values as :class:`Linear` (``w`` ``[in, out]``, ``b``
``[out]``, under the same path), but the matmul sees the heads: ``[..., D]``
to ``[..., H, K]`` with ``w`` viewed as ``[D, H, K]``, or ``[..., H, K]`` to
``[..., D]`` with ``w`` viewed as ``[H, K, D]``. Why: XLA on CPU then fuses
the backward pass's weight-gradient dots instead of first copying their
inputs into a transposed layout (the transformer benchmark's train step:
0.96-0.98 of flax's where the flat ``x @ w`` then reshape gave 0.99-1.02,
same math, measured 2026-12-06).
"""

import jax
import jax.numpy as jnp

from minihaiku import params as params_lib
from minihaiku.nn import _layer_args
from minihaiku.nn.linear import Linear


class HeadsLinear(Linear):
    """A :class:`Linear` whose output is split into heads, or whose input is.

    ``HeadsLinear(n * k)(x, heads=n)`` is ``Linear(n * k)(x).reshape(..., n,
    k)``; ``HeadsLinear(d)(x)`` with ``x`` of shape ``[..., n, k]`` is
    ``Linear(d)(x.reshape(..., n * k))``. Subclassing ``Linear`` keeps
    precision policies, interceptors and getters (e.g. LoRA) that target
    ``Linear`` applying to it.
    """

    def __call__(self, x: jax.Array, heads: int | None = None) -> jax.Array:
        """Projects ``x``; see the class docstring.

        Args:
          x: ``[..., D]`` when ``heads`` is given, else ``[..., H, K]``.
          heads: split the output into this many heads.

        Returns:
          ``[..., heads, output_size // heads]``, or ``[..., output_size]``.
        """
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            raise _layer_args.not_floating(self, x)
        out = self.output_size
        if heads is None:
            *_, h, k = x.shape
            self.input_size = h * k
            w = params_lib.get_param("w", (h * k, out), x.dtype, self.w_init)
            y = jnp.einsum("...hk,hkd->...d", x, w.reshape(h, k, out), precision=self.precision)
            b_shape: tuple[int, ...] = (out,)
        else:
            self.input_size = x.shape[-1]
            w = params_lib.get_param("w", (self.input_size, out), x.dtype, self.w_init)
            w = w.reshape(self.input_size, heads, out // heads)
            y = jnp.einsum("...d,dhk->...hk", x, w, precision=self.precision)
            b_shape = (heads, out // heads)
        if not self.with_bias:
            return y
        return y + params_lib.get_param("b", (out,), x.dtype, self.b_init).reshape(b_shape)
