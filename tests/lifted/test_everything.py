"""Every lifted transform in one model: init, apply, jit, grad."""


import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close


def everything(x):
    """Every lifted transform once, with params, state and keys."""
    x = L.remat(lambda x: jnp.tanh(Linear(3)(x)))(x)

    def cell(h, x):
        n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
        mh.set_state("n", n + 1)
        return jnp.tanh(Linear(3)(x) + Linear(3)(h)), mh.next_rng_key()

    x, _ = L.scan(cell, x, jnp.ones((2,) + x.shape))
    x = L.layer_stack(2)(lambda x: jnp.tanh(Linear(3)(x)) + mh.get_state(
        "s", (), init=jnp.ones))(x)
    x = L.vmap(lambda x: Linear(3)(x) + jax.random.normal(mh.next_rng_key(), (3,)),
               split_rng=True)(x)
    x = L.cond(jnp.sum(x) > 0, lambda x: Linear(3)(x), lambda x: 2 * Linear(3)(x), x)
    x = L.switch(1, [lambda x: Linear(3)(x), lambda x: -Linear(3)(x)], x)
    x = L.fori_loop(0, 2, lambda i, x: jnp.tanh(Linear(3)(x)), x)
    return L.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, Linear(3)(c[1])), (0, x))[1]


class EverythingTest(absltest.TestCase):

    def test_jit_init_is_bit_for_bit_eager_init_and_jvp_runs(self):
        init, apply = mh.transform_with_state(everything)
        params, state = init(0, X)
        self.assertLen(params, 2 * 11)
        jit_params, jit_state = jax.jit(init)(0, X)
        jax.tree_util.tree_map(np.testing.assert_array_equal, (jit_params, jit_state),
                               (params, state))
        out, _ = apply(params, state, 1, X)
        # Forward mode: while_loop has no reverse mode.
        tangent = jax.tree_util.tree_map(jnp.ones_like, params)
        primal_out, tangent_out = jax.jit(lambda p, t: jax.jvp(
            lambda p: apply(p, state, 1, X)[0], (p,), (t,)))(params, tangent)
        assert_close(primal_out, out)
        self.assertEqual(tangent_out.shape, out.shape)


    def test_disable_jit_gives_the_same_params_and_outputs(self):
        # Under jax.disable_jit, lax.switch runs only the taken branch: module
        # names (of the branches and of what follows) must not change.
        def g(x):
            x = L.cond(jnp.sum(x) > 100, lambda x: Linear(3)(x), lambda x: 2 * Linear(3)(x), x)
            x = L.switch(2, [lambda x: Linear(3)(x)] * 3, x)
            return L.scan(lambda c, x: (Linear(3)(c), None), x, None, length=2)[0]

        init, apply = mh.transform_with_state(g)
        params, state = init(0, X)
        out, new_state = apply(params, state, 1, X)
        with jax.disable_jit():
            params_nojit, _ = init(0, X)
            out_nojit, state_nojit = apply(params, state, 1, X)
        self.assertEqual(list(params_nojit), list(params))
        assert_close(params_nojit, params)
        assert_close(out_nojit, out)
        assert_close(state_nojit, new_state)


if __name__ == "__main__":
    absltest.main()
