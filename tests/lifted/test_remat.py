"""mh.lifted.remat against jax.checkpoint with explicit params."""


import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_all_distinct, assert_close, lin, shapes


def _mlp_blocks(use_remat, depth=8, block=4, width=32):
    def f(x):
        def run_block(x):
            for _ in range(block):
                x = jnp.tanh(Linear(width)(x))
            return x
        wrapped = L.remat(run_block) if use_remat else run_block
        for _ in range(depth // block):
            x = wrapped(x)
        return jnp.sum(x ** 2)
    return mh.transform(f)


def _mlp_reference(params, x, depth=8):
    for i in range(depth):
        x = jnp.tanh(lin(params, f"~/Linear_{i}/__call__", x))
    return jnp.sum(x ** 2)


class RematTest(parameterized.TestCase):

    def test_init_paths_values_and_grads_match_reference(self):
        plain, remat = _mlp_blocks(False), _mlp_blocks(True)
        x = jax.random.normal(jax.random.PRNGKey(1), (16, 32))
        params = remat.init(0, x)
        plain_params = plain.init(0, x)
        self.assertEqual(list(params), list(plain_params))  # creation order kept
        for path in params:  # remat(f) creates exactly f's params
            np.testing.assert_array_equal(params[path], plain_params[path])
        want, want_g = jax.value_and_grad(_mlp_reference)(params, x)
        got, got_g = jax.value_and_grad(lambda p: remat.apply(p, None, x))(params)
        assert_close(got, want)
        # Gradients are O(100) here: float32 noise on near-zero entries needs
        # an absolute tolerance on that scale.
        assert_close(got_g, want_g, atol=1e-4)
        got_jit = jax.jit(jax.grad(lambda p: remat.apply(p, None, x)))(params)
        assert_close(got_jit, want_g, atol=1e-4)

    def test_keys_drawn_inside_equal_keys_drawn_without_remat(self):
        def noisy(x):
            return x + jax.random.normal(mh.next_rng_key(), x.shape)

        def f(remat):
            def g(x):
                for _ in range(10):  # 20 keys: crosses a block boundary of the sequence
                    x = (L.remat(noisy) if remat else noisy)(x)
                    x = x + jax.random.normal(mh.next_rng_key(), x.shape)
                return x
            return mh.transform(g).apply

        x = jnp.zeros((2, 3))
        for seed in (0, 1):
            assert_close(f(True)({}, seed, x), f(False)({}, seed, x))
        self.assertFalse(np.allclose(f(True)({}, 0, x), f(True)({}, 1, x)))

    def test_saved_residuals_shrink(self):
        x = jnp.ones((128, 64))
        params = _mlp_blocks(True, width=64).init(0, x)

        def residual_bytes(use_remat):
            apply = _mlp_blocks(use_remat, width=64).apply
            _, vjp = jax.vjp(lambda p: apply(p, None, x), params)
            return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(vjp))

        self.assertLess(residual_bytes(True), 0.5 * residual_bytes(False))

    def test_state_rng_and_static_argnums(self):
        def block(x, double):
            n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
            mh.set_state("n", n + 1)
            x = Linear(3)(x)
            return (2 * x if double else x), mh.next_rng_key()

        def f(x):
            y, k1 = L.remat(block, static_argnums=1)(x, True)
            return y, k1, mh.next_rng_key()

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (3, 3),
                                          "~/Linear_0/__call__/b": (3,)})
        self.assertEqual(dict(state), {"~/n": 0})
        (y, k1, k2), state = apply(params, state, 1, X)
        self.assertEqual(int(state["~/n"]), 1)
        assert_close(y, 2 * lin(params, "~/Linear_0/__call__", X))
        assert_all_distinct(self, jnp.stack([k1, k2]))


if __name__ == "__main__":
    absltest.main()
