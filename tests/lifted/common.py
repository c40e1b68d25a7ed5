"""What the mh.lifted tests share: the test Linear and reference helpers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import helpers
import minihaiku as mh
from helpers import Linear  # noqa: F401 (the lifted tests import it from here)

L = mh.lifted
normal = jax.nn.initializers.normal(1.0)
X = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)


def lin(params, prefix, x):
    """The reference: Linear by hand with explicit params."""
    return x @ params[f"{prefix}/w"] + params[f"{prefix}/b"]


def shapes(tree):
    return {k: tuple(v.shape) for k, v in tree.items()}


# The lifted tests compare against hand-written references at this rtol.
assert_close = functools.partial(helpers.assert_close, rtol=2e-4)


def assert_all_distinct(test, keys):
    data = np.asarray(jax.random.key_data(keys) if jnp.issubdtype(
        keys.dtype, jax.dtypes.prng_key) else keys).reshape(len(keys), -1)
    test.assertLen({tuple(row) for row in data}, len(keys))


def jgrad(f):
    """``jax.grad`` under ``jax.jit``: one compile instead of one per op (fast tests)."""
    return jax.jit(jax.grad(f))


class LeakChecked:
    """Mixin: the test runs with jax_check_tracer_leaks on."""

    def setUp(self):
        super().setUp()
        self._was = jax.config.jax_check_tracer_leaks
        jax.config.update("jax_check_tracer_leaks", True)

    def tearDown(self):
        jax.config.update("jax_check_tracer_leaks", self._was)
        super().tearDown()
