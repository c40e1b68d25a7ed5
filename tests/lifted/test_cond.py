"""mh.lifted.cond / switch against jax.lax with explicit params."""


import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close, jgrad, lin


class CondSwitchTest(parameterized.TestCase):

    @staticmethod
    def _branches():
        def a(x):
            mh.set_state("taken", jnp.int32(0))
            return Linear(2)(x)

        def b(x):
            mh.set_state("taken", jnp.int32(1))
            return 2.0 * Linear(2)(x) + jax.random.normal(mh.next_rng_key(), (2,))

        def c(x):
            mh.set_state("taken", jnp.int32(2))
            return jnp.ones((x.shape[0], 2))
        return a, b, c

    @parameterized.parameters(True, False)
    def test_cond_creates_all_params_runs_taken_branch(self, pred):
        a, b, _ = self._branches()
        init, apply = mh.transform_with_state(lambda x, p: L.cond(p, a, b, x))
        params, state = init(0, X, pred)
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b",
                                        "~/Linear_1/__call__/w", "~/Linear_1/__call__/b"])
        out, state = apply(params, state, 1, X, pred)
        self.assertEqual(int(state["~/taken"]), 0 if pred else 1)
        if pred:
            assert_close(out, lin(params, "~/Linear_0/__call__", X))
        else:
            noise = out - 2.0 * lin(params, "~/Linear_1/__call__", X)
            assert_close(noise, jnp.broadcast_to(noise[0], noise.shape))
        out_jit, _ = jax.jit(apply)(params, state, 1, X, pred)
        assert_close(out_jit, out)

    @parameterized.parameters(0, 1, 2, 5)
    def test_switch(self, index):
        init, apply = mh.transform_with_state(
            lambda x, i: L.switch(i, self._branches(), x))
        params, state = init(0, X, index)
        self.assertLen(params, 4)
        _, state = jax.jit(apply)(params, state, 1, X, index)
        self.assertEqual(int(state["~/taken"]), min(index, 2))

    def test_grad_through_cond(self):
        a, _, c = self._branches()
        init, apply = mh.transform_with_state(lambda x: L.cond(True, a, c, x))
        params, state = init(0, X)
        grad = jgrad(lambda p: jnp.sum(apply(p, state, None, X)[0]))(params)
        want = jgrad(lambda p: jnp.sum(lin(p, "~/Linear_0/__call__", X)))(params)
        assert_close(grad, want)


if __name__ == "__main__":
    absltest.main()
