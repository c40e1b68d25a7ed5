"""Every mh.lifted function outside a transform: a clear error naming its jax twin."""


import jax.numpy as jnp
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L


class OutsideTransformTest(parameterized.TestCase):

    @parameterized.parameters(
        ("remat", lambda: L.remat(jnp.sin)(1.0), "jax.checkpoint"),
        ("scan", lambda: L.scan(lambda c, x: (c, x), 0.0, jnp.ones(2)), "jax.lax.scan"),
        ("layer_stack", lambda: L.layer_stack(2)(jnp.sin)(1.0), "jax.lax.scan"),
        ("vmap", lambda: L.vmap(jnp.sin, split_rng=False)(jnp.ones(2)), "jax.vmap"),
        ("cond", lambda: L.cond(True, jnp.sin, jnp.cos, 1.0), "jax.lax.cond"),
        ("switch", lambda: L.switch(0, [jnp.sin], 1.0), "jax.lax.switch"),
        ("fori_loop", lambda: L.fori_loop(0, 2, lambda i, x: x, 1.0), "jax.lax.fori_loop"),
        ("while_loop", lambda: L.while_loop(lambda x: x < 1, lambda x: x + 1, 0.0),
         "jax.lax.while_loop"),
        ("value_and_grad", lambda: L.grad(jnp.sin)(1.0), "jax.value_and_grad"),
    )
    def test_error_names_jax_equivalent(self, name, call, jax_name):
        with self.assertRaises(mh.NotInTransformError) as cm:
            call()
        self.assertIn(f"mh.lifted.{name}", str(cm.exception))
        self.assertIn(jax_name, str(cm.exception))

    def test_exports(self):
        self.assertCountEqual(L.__all__, [
            "cond", "switch", "layer_stack", "fori_loop", "while_loop", "remat", "scan", "vmap",
            "grad", "value_and_grad", "eager_cache", "unstack", "stack", "per_layer",
            "PerLayerState"])


if __name__ == "__main__":
    absltest.main()
