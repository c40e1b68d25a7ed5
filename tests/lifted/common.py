"""What the mh.lifted tests share: one test-local Linear and reference helpers."""

import jax
import jax.numpy as jnp
import numpy as np

import minihaiku as mh

L = mh.lifted
normal = jax.nn.initializers.normal(1.0)
X = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)


class Linear(mh.Module):
    """A test-local Linear (no mh.nn): params 'w' [in, out] and 'b' [out]."""

    def __init__(self, size, name=None):
        super().__init__(name=name)
        self.size = size

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size), init=normal)
        b = mh.get_param("b", (self.size,), init=normal)
        return x @ w + b


def lin(params, prefix, x):
    """The reference: Linear by hand with explicit params."""
    return x @ params[f"{prefix}/w"] + params[f"{prefix}/b"]


def shapes(tree):
    return {k: tuple(v.shape) for k, v in tree.items()}


def assert_close(a, b, **kw):
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                rtol=kw.get("rtol", 2e-4),
                                                atol=kw.get("atol", 1e-5)), a, b)


def assert_all_distinct(test, keys):
    data = np.asarray(jax.random.key_data(keys) if jnp.issubdtype(
        keys.dtype, jax.dtypes.prng_key) else keys).reshape(len(keys), -1)
    test.assertLen({tuple(row) for row in data}, len(keys))


def jgrad(f):
    """``jax.grad`` under ``jax.jit``: one compile instead of one per op (fast tests)."""
    return jax.jit(jax.grad(f))
