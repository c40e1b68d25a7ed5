"""multi_transform (several entry points, one set of params) and lift (a model inside a model)."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh


class Dense(mh.Module):

    def __init__(self, size, name=None):
        super().__init__(name=name)
        self.size = size

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size))
        b = mh.get_param("b", (self.size,), init=jax.nn.initializers.zeros)
        return x @ w + b


class Encoder(mh.Module):

    def __call__(self, x):
        return jnp.tanh(Dense(2)(x))


class Decoder(mh.Module):

    def __call__(self, z):
        return Dense(5)(z)


def _vae():
    enc, dec = Encoder(), Decoder()

    def template(x):
        return dec(enc(x))

    return template, {"encode": enc, "decode": dec}


class MultiTransformTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.x = jax.random.normal(jax.random.PRNGKey(1), (3, 5))

    def test_encoder_decoder_pair_matches_hand_written_jax(self):
        t = mh.multi_transform(_vae)
        self.assertIsInstance(t, mh.MultiTransformed)
        params = t.init(0, self.x)
        self.assertEqual(list(params), [
            "~/Encoder_0/__call__/Dense_0/__call__/w", "~/Encoder_0/__call__/Dense_0/__call__/b",
            "~/Decoder_0/__call__/Dense_0/__call__/w", "~/Decoder_0/__call__/Dense_0/__call__/b"])
        self.assertEqual(params["~/Decoder_0/__call__/Dense_0/__call__/w"].shape, (2, 5))
        ew, eb, dw, db = params.values()
        z = t.apply["encode"](params, None, self.x)
        np.testing.assert_allclose(z, jnp.tanh(self.x @ ew + eb), rtol=1e-6)
        np.testing.assert_allclose(t.apply["decode"](params, None, z), z @ dw + db, rtol=1e-6)
        # Jitted entries agree.
        np.testing.assert_allclose(jax.jit(t.apply["encode"])(params, None, self.x), z,
                                   rtol=1e-6)

    def test_actor_critic_where_the_template_touches_one_entry(self):
        class Actor(mh.Module):
            def __call__(self, obs):
                return jnp.tanh(Dense(2)(obs))

        class Critic(mh.Module):
            def __call__(self, obs):
                h = jax.nn.relu(Dense(4)(obs))
                return Dense(1)(h)

        def f():
            actor, critic = Actor(), Critic()
            return (lambda x: (actor(x), critic(x))), (actor, critic)

        init, (act, value) = mh.multi_transform(f)
        params = init(0, self.x)
        # The template touches both entries, so init makes both's params.
        self.assertEqual(list(params), [
            "~/Actor_0/__call__/Dense_0/__call__/w", "~/Actor_0/__call__/Dense_0/__call__/b",
            "~/Critic_0/__call__/Dense_0/__call__/w", "~/Critic_0/__call__/Dense_0/__call__/b",
            "~/Critic_0/__call__/Dense_1/__call__/w", "~/Critic_0/__call__/Dense_1/__call__/b"])
        aw, ab, c0w, c0b, c1w, c1b = params.values()
        np.testing.assert_allclose(act(params, None, self.x), jnp.tanh(self.x @ aw + ab),
                                   rtol=1e-6)
        np.testing.assert_allclose(value(params, None, self.x),
                                   jax.nn.relu(self.x @ c0w + c0b) @ c1w + c1b, rtol=1e-5)
        # Init is deterministic and jit-compatible.
        jitted = jax.jit(init)(0, self.x)
        for k in params:
            np.testing.assert_array_equal(params[k], jitted[k])

    def test_entry_the_template_never_calls_fails_in_apply_naming_the_rule(self):
        def f():
            enc, dec = Encoder(), Decoder()
            return enc, {"encode": enc, "decode": lambda z, extra: dec(z) + extra}

        t = mh.multi_transform(f)
        params = t.init(0, self.x)  # Haiku's rule: init runs only the template.
        self.assertTrue(all(p.startswith("~/Encoder_0/") for p in params))
        z = t.apply["encode"](params, None, self.x)
        with self.assertRaisesRegex(mh.MissingParamError,
                                    r"(?s)fns\['decode'\].*Decoder_0.*template"):
            t.apply["decode"](params, None, z, 1.0)

    def test_with_state_and_an_entry_sharing_the_template_state(self):
        class Counter(mh.Module):
            def count(self, inc=0):
                n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
                mh.set_state("n", n + inc)
                return n

            def __call__(self, x):
                self.count(1)
                return Dense(2)(x)

        def f():
            c = Counter()
            return c, {"step": c, "peek": c.count}
        # State belongs to the module: count() reads what __call__'s count(1) wrote.

        t = mh.multi_transform_with_state(f)
        self.assertIsInstance(t, mh.MultiTransformedWithState)
        params, state = t.init(0, self.x)
        self.assertEqual(list(state), ["~/Counter_0/n"])
        self.assertEqual(int(state["~/Counter_0/n"]), 0)
        _, state = t.apply["step"](params, state, None, self.x)
        _, state = t.apply["step"](params, state, None, self.x)
        n, _ = t.apply["peek"](params, state, None)
        self.assertEqual(int(n), 2)

    def test_bad_f(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"must return \(template, fns\)"):
            mh.multi_transform(lambda: Dense(2))


class LiftTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.x = jax.random.normal(jax.random.PRNGKey(1), (3, 5))
        self.inner = mh.transform(lambda x: Decoder()(Encoder()(x)))
        self.key = jax.random.PRNGKey(42)

    def test_embedded_model_params_equal_its_standalone_init(self):
        inner, key = self.inner, self.key

        class Head(mh.Module):
            def __call__(self, x):
                p = mh.lift(inner.init, name="body")(key, x)
                return Dense(1)(inner.apply(p, None, x)), p

        outer = mh.transform(lambda x: Head()(x))
        params = outer.init(0, self.x)
        alone = inner.init(key, self.x)
        prefix = "~/Head_0/__call__/body/"
        self.assertEqual(list(params)[:4], [prefix + p[2:] for p in alone])
        for p in alone:
            np.testing.assert_array_equal(params[prefix + p[2:]], alone[p])
        out, returned = outer.apply(params, None, self.x)
        self.assertEqual(set(returned), set(alone))
        hw, hb = params["~/Head_0/__call__/Dense_0/__call__/w"], params[
            "~/Head_0/__call__/Dense_0/__call__/b"]
        np.testing.assert_allclose(out, inner.apply(alone, None, self.x) @ hw + hb, rtol=1e-5)
        # Gradients reach the lifted params.
        grads = jax.grad(lambda p: outer.apply(p, None, self.x)[0].sum())(params)
        self.assertGreater(float(jnp.abs(grads[prefix + "Encoder_0/__call__/Dense_0/__call__/w"])
                                 .sum()), 0.0)

    def test_lift_composes_with_lifted_scan_and_jit(self):
        inner, key = self.inner, self.key

        def f(xs):
            def body(c, x):
                p = mh.lift(inner.init, name="lifted")(key, x)
                return c, inner.apply(p, None, x)
            return mh.lifted.scan(body, 0, xs)[1]

        xs = jnp.stack([self.x, 2 * self.x])
        init, apply = mh.transform(f)
        params = init(0, xs)
        alone = inner.init(key, self.x)
        self.assertEqual(sorted(params), sorted("~/lifted/" + p[2:] for p in alone))
        want = jnp.stack([inner.apply(alone, None, x) for x in xs])
        np.testing.assert_allclose(apply(params, None, xs), want, rtol=1e-5)
        np.testing.assert_allclose(jax.jit(apply)(params, None, xs), want, rtol=1e-5)
        jitted = jax.jit(init)(0, xs)
        for k in params:
            np.testing.assert_array_equal(params[k], jitted[k])

    def test_lift_refuses_a_non_params_init(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "must return the params dict"):
            mh.transform(lambda: mh.lift(lambda: (1, 2))()).init(0)
        with self.assertRaises(mh.InvalidNameError):
            mh.transform(lambda: mh.lift(self.inner.init, name="a/b")(0, self.x)).init(0)


if __name__ == "__main__":
    absltest.main()
