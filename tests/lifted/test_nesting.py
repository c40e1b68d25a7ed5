"""Lifted transforms nested in each other, against hand-written JAX."""

import types

import jax
import jax.numpy as jnp
from absl.testing import absltest

import minihaiku as mh
from lifted.common import L, Linear, X, assert_all_distinct, assert_close, jgrad, lin, shapes


class EdgeCasesTest(absltest.TestCase):

    def test_read_only_params_mapping_works_with_lifted_ops(self):
        f = mh.transform(lambda x: L.scan(lambda c, _: (Linear(3)(c), None), x, None,
                                          length=2)[0])
        params = f.init(0, X)
        assert_close(f.apply(types.MappingProxyType(params), None, X), f.apply(params, None, X))

    def test_cond_branches_see_state_created_by_earlier_branches(self):
        def a(x):
            mh.set_state("s", jnp.sum(x))
            return x

        def b(x):
            return x + mh.get_state("s")

        init, apply = mh.transform_with_state(lambda x: L.cond(jnp.sum(x) > 0, a, b, x))
        params, state = init(0, X)
        self.assertEqual(list(state), ["~/s"])
        out, _ = apply(params, {"~/s": jnp.asarray(5.0)}, None, -X)
        assert_close(out, -X + 5.0)

    def test_while_cond_fun_drawing_a_key_is_a_clear_error(self):
        def f(x):
            return L.while_loop(
                lambda c: c < jax.random.uniform(mh.next_rng_key()) + 2,
                lambda c: c + 1.0, x)

        with self.assertRaisesRegex(mh.MiniHaikuError, "cond_fun drew a random key"):
            mh.transform(f).apply({}, 0, 0.0)



class NestedTransformsTest(absltest.TestCase):

    def test_typed_key_and_running_init_inside_bodies(self):
        def f(xs):
            def step(c, x):
                flags.append(mh.running_init())
                return c, jax.random.key_data(mh.next_rng_key())
            keys = L.scan(step, 0.0, xs)[1]
            per_example = L.vmap(lambda x: jax.random.key_data(mh.next_rng_key()),
                                 split_rng=True)(xs)
            return keys, per_example

        flags = []
        init, apply = mh.transform(f)
        init(jax.random.key(0), X)
        self.assertTrue(flags and all(flags))
        flags.clear()
        keys, per_example = apply({}, jax.random.key(1), X)
        self.assertFalse(any(flags))
        assert_all_distinct(self, keys)
        assert_all_distinct(self, per_example)

    def test_state_under_plain_transform_is_refused_inside_bodies(self):
        def f(x):
            return L.scan(lambda c, x: (mh.get_state("s", (), init=jnp.zeros), x), 0.0, x)

        with self.assertRaises(mh.StateNotAllowedError):
            mh.transform(f).init(0, X)
        self.assertFalse(mh.inside_transform())

    def test_scan_of_remat_inside_vmap_matches_reference(self):
        def f(xs):
            def per_example(x):
                layer = Linear(3)

                def step(c, _):
                    return L.remat(lambda c: jnp.tanh(layer(c)))(c), None
                return L.scan(step, x, None, length=3)[0]
            return L.vmap(per_example, split_rng=False)(xs)

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (3, 3),
                                          "~/Linear_0/__call__/b": (3,)})

        def ref(p):
            x = X
            for _ in range(3):
                x = jnp.tanh(lin(p, "~/Linear_0/__call__", x))
            return x

        assert_close(apply(params, None, X), ref(params))
        assert_close(jgrad(lambda p: jnp.sum(apply(p, None, X)))(params),
                     jgrad(lambda p: jnp.sum(ref(p)))(params))


if __name__ == "__main__":
    absltest.main()
