"""transform / transform_with_state / without_apply_rng, purity and rng forms."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh


class Dense(mh.Module):

    def __init__(self, size, name=None):
        super().__init__(name=name)
        self.size = size

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size),
                         init=jax.nn.initializers.truncated_normal(1.0))
        b = mh.get_param("b", (self.size,), init=jax.nn.initializers.normal(1.0))
        return jnp.tanh(x @ w + b)


def net(x):
    x = Dense(8)(x)
    x = Dense(8)(x)
    return Dense(1)(x)


def _assert_trees_equal(test, a, b):
    test.assertEqual(set(a), set(b))
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


class TransformTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.x = jnp.linspace(-1., 1., 12).reshape(4, 3)

    def test_jit_init_is_bitwise_eager_init(self):
        init, _ = mh.transform(net)
        rng = jax.random.PRNGKey(7)
        _assert_trees_equal(self, jax.jit(init)(rng, self.x), init(rng, self.x))

    def test_init_keys_are_insertion_ordered(self):
        params = mh.transform(net).init(0, self.x)
        self.assertEqual(list(params), [
            "~/Dense_0/__call__/w", "~/Dense_0/__call__/b",
            "~/Dense_1/__call__/w", "~/Dense_1/__call__/b",
            "~/Dense_2/__call__/w", "~/Dense_2/__call__/b"])

    def test_same_rng_same_params_and_different_rng_different(self):
        init, _ = mh.transform(net)
        a, b = init(3, self.x), init(3, self.x)
        _assert_trees_equal(self, a, b)
        c = init(4, self.x)
        self.assertFalse(np.array_equal(a["~/Dense_0/__call__/w"], c["~/Dense_0/__call__/w"]))
        # Every param of one init is drawn with its own key.
        self.assertFalse(np.array_equal(a["~/Dense_1/__call__/w"][:3], a["~/Dense_0/__call__/w"]))

    @parameterized.named_parameters(
        ("int", lambda: 5),
        ("numpy_int", lambda: np.int64(5)),
        ("typed_key", lambda: jax.random.key(5)),
        ("jit_traced_int", None),
    )
    def test_rng_forms_agree(self, make_rng):
        init, _ = mh.transform(net)
        expected = init(jax.random.PRNGKey(5), self.x)
        if make_rng is None:
            got = jax.jit(init)(5, self.x)
        else:
            got = init(make_rng(), self.x)
        _assert_trees_equal(self, got, expected)

    def test_apply_matches_hand_written_jax(self):
        init, apply = mh.transform(net)
        params = init(1, self.x)

        def reference(p, x):
            for i in range(3):
                x = jnp.tanh(x @ p[f"~/Dense_{i}/__call__/w"] + p[f"~/Dense_{i}/__call__/b"])
            return x

        np.testing.assert_allclose(apply(params, None, self.x), reference(params, self.x),
                                   rtol=1e-6)
        np.testing.assert_allclose(jax.jit(apply)(params, None, self.x),
                                   reference(params, self.x), rtol=1e-5)

    def test_apply_does_not_mutate_inputs(self):
        init, apply = mh.transform_with_state(_counter)
        params, state = init(None)
        params_copy, state_copy = dict(params), dict(state)
        _, new_state = apply(params, state, None)
        self.assertEqual(params, params_copy)
        self.assertIs(state["~/count"], state_copy["~/count"])
        self.assertIsNot(new_state, state)
        self.assertEqual(int(new_state["~/count"]), 1)

    def test_grad_vmap_and_pmap_of_apply(self):
        init, apply = mh.without_apply_rng(mh.transform(net))
        params = init(0, self.x)
        grads = jax.grad(lambda p: apply(p, self.x).sum())(params)
        self.assertEqual(jax.tree_util.tree_structure(grads),
                         jax.tree_util.tree_structure(params))
        eps = 1e-2
        w = "~/Dense_2/__call__/b"
        bumped = dict(params, **{w: params[w] + eps})
        numeric = (apply(bumped, self.x).sum() - apply(params, self.x).sum()) / eps
        np.testing.assert_allclose(grads[w][0], numeric, rtol=2e-2)
        batched = jax.vmap(apply, in_axes=(None, 0))(params, self.x[:, None])
        np.testing.assert_allclose(batched[:, 0], apply(params, self.x), rtol=1e-5)
        pmapped = jax.pmap(apply, in_axes=(None, 0))(params, self.x[None])
        np.testing.assert_allclose(pmapped[0], apply(params, self.x), rtol=1e-5)

    def test_without_apply_rng(self):
        t = mh.without_apply_rng(mh.transform(net))
        self.assertIsInstance(t, mh.Transformed)
        params = t.init(0, self.x)
        np.testing.assert_array_equal(t.apply(params, self.x),
                                      mh.transform(net).apply(params, None, self.x))
        ts = mh.without_apply_rng(mh.transform_with_state(_counter))
        self.assertIsInstance(ts, mh.TransformedWithState)
        params, state = ts.init(None)
        out, state = ts.apply(params, state)
        self.assertEqual((int(out), int(state["~/count"])), (0, 1))
        with self.assertRaisesRegex(mh.MiniHaikuError, "without_apply_rng expects"):
            mh.without_apply_rng(net)

    def test_running_init_and_inside_transform(self):
        seen = []

        def f():
            seen.append((mh.running_init(), mh.inside_transform()))

        init, apply = mh.transform(f)
        self.assertFalse(mh.inside_transform())
        apply(init(None), None)
        self.assertEqual(seen, [(True, True), (False, True)])
        with self.assertRaises(mh.NotInTransformError):
            mh.running_init()

    def test_rng_is_optional_when_no_key_is_drawn(self):
        init, apply = mh.transform(lambda x: x * 2)
        self.assertEqual(init(None, 1.0), {})
        self.assertEqual(apply({}, None, 3.0), 6.0)

    def test_deterministic_initializers_need_no_rng(self):
        def f(x):
            return x * mh.get_param("s", x.shape[-1:], init=jax.nn.initializers.ones)

        init, apply = mh.transform(f)
        params = init(None, self.x)
        np.testing.assert_array_equal(params["~/s"], np.ones(3))
        with self.assertRaisesRegex(mh.NoRngError, "'~/p'.*rng=None"):
            mh.transform(lambda: mh.get_param("p", (2,))).init(None)

    def test_jit_static_argnums_sees_the_real_signature(self):
        def f(x, double):
            return x * (2 if double else 1)

        apply = jax.jit(mh.transform(f).apply, static_argnums=3)
        np.testing.assert_array_equal(apply({}, None, self.x, True), 2 * self.x)

    def test_next_rng_key_is_fresh_and_deterministic(self):
        def f():
            return [mh.next_rng_key() for _ in range(40)]

        _, apply = mh.transform(f)
        keys = apply({}, 0)
        self.assertLen({tuple(np.asarray(k)) for k in keys}, 40)
        again = jax.jit(apply)({}, 0)
        for a, b in zip(keys, again, strict=True):
            np.testing.assert_array_equal(a, b)
        other = apply({}, 1)
        self.assertFalse(np.array_equal(keys[0], other[0]))

    def test_maybe_next_rng_key(self):
        _, apply = mh.transform(lambda: mh.maybe_next_rng_key())
        self.assertIsNone(apply({}, None))
        self.assertEqual(apply({}, 0).shape, (2,))

    def test_custom_initializer_and_dtype(self):
        def f():
            return mh.get_param("p", (2, 3), jnp.bfloat16, init=jax.nn.initializers.ones)

        init, apply = mh.transform(f)
        params = init(0)
        self.assertEqual(params["~/p"].dtype, jnp.bfloat16)
        np.testing.assert_array_equal(np.asarray(params["~/p"], np.float32), np.ones((2, 3)))
        self.assertIs(apply(params, None), params["~/p"])


def _counter():
    count = mh.get_state("count", (), jnp.int32, init=jnp.zeros)
    mh.set_state("count", count + 1)
    return count


class StateTest(absltest.TestCase):

    def test_counter_round_trip(self):
        init, apply = mh.transform_with_state(_counter)
        params, state = init(None)
        self.assertEqual(params, {})
        self.assertEqual(int(state["~/count"]), 0)  # init returns state as first created
        outs = []
        for _ in range(3):
            out, state = apply(params, state, None)
            outs.append(int(out))
        self.assertEqual(outs, [0, 1, 2])
        out, state2 = jax.jit(apply)(params, state, None)
        self.assertEqual((int(out), int(state2["~/count"])), (3, 4))

    def test_state_in_modules_and_set_before_get(self):
        class Acc(mh.Module):
            def __call__(self, x):
                total = mh.get_state("total", x.shape, init=jnp.zeros)
                mh.set_state("total", total + x)
                mh.set_state("last", x)
                return mh.get_state("last")

        init, apply = mh.transform_with_state(lambda x: Acc()(x))
        x = jnp.arange(3.)
        params, state = init(None, x)
        self.assertEqual(set(state), {"~/Acc_0/total", "~/Acc_0/last"})
        np.testing.assert_array_equal(state["~/Acc_0/total"], np.zeros(3))
        out, state = apply(params, state, None, x)
        out, state = apply(params, state, None, 2 * x)
        np.testing.assert_array_equal(out, 2 * x)
        np.testing.assert_array_equal(state["~/Acc_0/total"], 3 * x)


if __name__ == "__main__":
    absltest.main()
