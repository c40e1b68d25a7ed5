"""The one test-local ``Linear``: a module that needs nothing from ``mh.nn``."""

import jax

import minihaiku as mh

normal = jax.nn.initializers.normal(1.0)


class Linear(mh.Module):
    """``x @ w + b`` with params ``w`` ``[in, out]`` and ``b`` ``[out]``, both N(0, 1)."""

    def __init__(self, size, name=None):
        super().__init__(name=name)
        self.size = size

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size), init=normal)
        b = mh.get_param("b", (self.size,), init=normal)
        return x @ w + b
