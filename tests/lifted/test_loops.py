"""mh.lifted.fori_loop / while_loop against jax.lax with explicit params."""


import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_all_distinct, assert_close, jgrad, lin, shapes


class LoopsTest(parameterized.TestCase):

    def test_fori_loop(self):
        def f(x):
            layer = Linear(3)

            def body(i, x):
                n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
                mh.set_state("n", n + i)
                mh.set_state("key", mh.next_rng_key())
                return jnp.tanh(layer(x) + Linear(3, name="inner")(x))
            return L.fori_loop(0, 4, body, x)

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X)
        self.assertEqual(sorted(shapes(params)), sorted([
            "~/Linear_0/__call__/w", "~/Linear_0/__call__/b",
            "~/inner_0/__call__/w", "~/inner_0/__call__/b"]))
        out, new_state = apply(params, state, 1, X)
        want = X
        for _ in range(4):
            want = jnp.tanh(lin(params, "~/Linear_0/__call__", want)
                            + lin(params, "~/inner_0/__call__", want))
        assert_close(out, want)
        self.assertEqual(int(new_state["~/n"]), 0 + 1 + 2 + 3)
        _, other = apply(params, state, 2, X)
        self.assertFalse(np.array_equal(new_state["~/key"], other["~/key"]))
        grad = jgrad(lambda p: jnp.sum(apply(p, state, 1, X)[0]))(params)
        self.assertEqual(shapes(grad), shapes(params))

    def test_while_loop_keys_differ_per_step(self):
        def f():
            def cond(c):
                return c[0] < 3

            def body(c):
                i, keys = c
                mh.set_state("bias_sum", mh.get_state("bias_sum") + Linear(1)(jnp.ones((1, 1))))
                return i + 1, keys.at[i].set(mh.next_rng_key())

            mh.set_state("bias_sum", jnp.zeros((1, 1)))
            keys = jnp.zeros((3,) + jax.random.PRNGKey(0).shape, jnp.uint32)
            return L.while_loop(cond, body, (0, keys))[1]

        init, apply = mh.transform_with_state(f)
        params, state = init(0)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (1, 1),
                                          "~/Linear_0/__call__/b": (1,)})
        keys, state = apply(params, state, 1)
        assert_all_distinct(self, keys)
        assert_close(state["~/bias_sum"],
                     3 * lin(params, "~/Linear_0/__call__", jnp.ones((1, 1))))

    def test_while_cond_may_not_set_state(self):
        def f(x):
            def cond(x):
                mh.set_state("s", x)
                return x < 3
            return L.while_loop(cond, lambda x: x + 1, x)

        with self.assertRaisesRegex(mh.MiniHaikuError, "cond_fun set state"):
            mh.transform_with_state(f).init(0, 0)


if __name__ == "__main__":
    absltest.main()
