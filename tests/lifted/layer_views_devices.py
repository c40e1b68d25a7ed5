"""Run by test_layer_views.py on 4 host devices: per_layer with mh.sharding specs.

Params are sharded by rules that name the trailing axes (the layer axis of a
stacked param stays unsharded); a jitted per_layer(Adafactor) step must give
the 1-device values and keep the layer axis unsharded in its outputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

import minihaiku as mh

LAYERS, WIDTH = 4, 8


def main():
    assert jax.device_count() == 4, jax.devices()

    def block(x):
        return x + mh.nn.Linear(WIDTH)(jnp.tanh(mh.nn.Linear(4 * WIDTH)(x)))

    f = mh.without_apply_rng(mh.transform(lambda x: mh.lifted.layer_stack(LAYERS)(block)(x)))
    x = jnp.linspace(-1, 1, 4 * WIDTH).reshape(4, WIDTH)
    params = f.init(0, x)
    tx = mh.lifted.per_layer(optax.adafactor(1e-2, min_dim_size_to_factor=4), LAYERS)

    def step(params, state):
        grads = jax.grad(lambda p: jnp.sum(f.apply(p, x) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    expected, _ = jax.jit(step)(params, tx.init(params))
    mesh = mh.sharding.mesh("model:4")
    rules = [(r"Linear_0/__call__/w", P(None, "model")), (r"Linear_1/__call__/w", P("model"))]
    placed = mh.sharding.shardings(params, rules, mesh)
    for path, sharding in placed.items():
        if path.endswith("/w"):
            assert sharding.spec[0] is None and "model" in sharding.spec, (path, sharding.spec)
    sharded = jax.device_put(params, placed)
    got, state = jax.jit(step, out_shardings=(placed, None))(sharded, tx.init(sharded))
    for path in params:
        np.testing.assert_allclose(got[path], expected[path], atol=1e-6)
        spec = got[path].sharding.spec
        assert not spec or spec[0] is None, (path, spec)
    print("OK")


if __name__ == "__main__":
    main()
