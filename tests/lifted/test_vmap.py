"""mh.lifted.vmap against jax.vmap with explicit params."""


import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_all_distinct, assert_close, jgrad, lin, shapes


class VmapTest(parameterized.TestCase):

    def test_params_broadcast_values_and_grads(self):
        def f(xs):
            return L.vmap(lambda x: jnp.tanh(Linear(2)(x)), split_rng=False)(xs)

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (3, 2),
                                          "~/Linear_0/__call__/b": (2,)})

        def ref(p):
            return jax.vmap(lambda x: jnp.tanh(lin(p, "~/Linear_0/__call__", x)))(X)

        assert_close(apply(params, None, X), ref(params))
        assert_close(jgrad(lambda p: jnp.sum(apply(p, None, X) ** 2))(params),
                     jgrad(lambda p: jnp.sum(ref(p) ** 2))(params))

    @parameterized.parameters(True, False)
    def test_split_rng_in_init_and_apply(self, split):
        seen = []

        def f(xs):
            keys = L.vmap(lambda x: (Linear(2)(x), mh.next_rng_key())[1],
                          split_rng=split)(xs)
            seen.append(keys)
            return keys

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(shapes(params)["~/Linear_0/__call__/w"], (3, 2))
        for keys in (seen[0], apply(params, 1, X)):
            if split:
                assert_all_distinct(self, keys)
            else:
                np.testing.assert_array_equal(keys, jnp.broadcast_to(keys[0], keys.shape))

    def test_in_axes_out_axes_and_state(self):
        def f(xs, y):
            def g(x, y):
                n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
                mh.set_state("n", n + 1)
                return Linear(2)(x) + y
            return L.vmap(g, in_axes=(1, None), out_axes=1, split_rng=False)(xs, y)

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X.T, 1.0)
        out, state = apply(params, state, None, X.T, 1.0)
        assert_close(out, (lin(params, "~/Linear_0/__call__", X) + 1.0).T)
        self.assertEqual(int(state["~/n"]), 1)

    def test_unmapped_python_value_reaches_the_function_as_is(self):
        def f(xs):
            def g(x, negate):
                return -Linear(2)(x) if negate else Linear(2)(x)   # Python control flow
            return L.vmap(g, in_axes=(0, None), split_rng=False)(xs, True)

        init, apply = mh.transform(f)
        params = init(0, X)
        assert_close(apply(params, None, X), -lin(params, "~/Linear_0/__call__", X))

    def test_state_depending_on_example_is_an_error_naming_the_path(self):
        def f(xs):
            mh.set_state("shared", jnp.zeros(()))

            def g(x):
                mh.set_state("shared", jnp.ones(()))
                mh.set_state("s", x)
                return x

            return L.vmap(g, split_rng=False)(xs)

        with self.assertRaisesRegex(mh.MiniHaikuError,
                                    r"vmap: \['~/s'\] created or set .* depend on the mapped"):
            mh.transform_with_state(f).init(0, X)


if __name__ == "__main__":
    absltest.main()
