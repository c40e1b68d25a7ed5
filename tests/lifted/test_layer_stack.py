"""mh.lifted.layer_stack against a Python loop over param slices."""


import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close, jgrad, lin, shapes


class LayerStackTest(parameterized.TestCase):

    @staticmethod
    def _layer(x, scale, *, shift):
        n = mh.get_state("calls", (), jnp.int32, init=jnp.zeros)
        mh.set_state("calls", n + 1)
        mh.set_state("last_mean", jnp.mean(x))
        return jnp.tanh(Linear(3)(x) * scale + shift)

    def test_stacked_params_state_and_reference(self):
        def f(x):
            return L.layer_stack(4)(self._layer)(x, 0.5, shift=0.1)

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (4, 3, 3),
                                          "~/Linear_0/__call__/b": (4, 3)})
        self.assertEqual(shapes(state), {"~/calls": (4,), "~/last_mean": (4,)})
        # Each layer initialised from a different key.
        w = np.asarray(params["~/Linear_0/__call__/w"])
        self.assertLen({w[i].tobytes() for i in range(4)}, 4)
        out, new_state = apply(params, state, None, X)
        # Reference: the layers one by one, each with its slice of the params.
        want, means = X, []
        for i in range(4):
            sliced = {k: v[i] for k, v in params.items()}
            means.append(jnp.mean(want))
            want = jnp.tanh(lin(sliced, "~/Linear_0/__call__", want) * 0.5 + 0.1)
        assert_close(out, want)
        np.testing.assert_array_equal(new_state["~/calls"], np.ones(4, np.int32))
        assert_close(new_state["~/last_mean"], jnp.stack(means))
        out_jit, _ = jax.jit(apply)(params, state, None, X)
        assert_close(out_jit, want)
        grad = jgrad(lambda p: jnp.sum(apply(p, state, None, X)[0]))(params)
        want_grad = jgrad(lambda p: jnp.sum(self._reference(p, 4)))(params)
        assert_close(grad, want_grad)

    @staticmethod
    def _reference(params, n):
        x = X
        for i in range(n):
            x = jnp.tanh(lin({k: v[i] for k, v in params.items()}, "~/Linear_0/__call__",
                             x) * 0.5 + 0.1)
        return x

    def test_one_scan_independent_of_depth(self):
        def jaxpr(n):
            f = mh.transform_with_state(
                lambda x: L.layer_stack(n)(self._layer)(x, 0.5, shift=0.1))
            params, state = f.init(0, X)
            return jax.make_jaxpr(f.apply)(params, state, None, X).jaxpr

        small, big = jaxpr(2), jaxpr(64)
        self.assertEqual([e.primitive.name for e in small.eqns],
                         [e.primitive.name for e in big.eqns])
        self.assertEqual([e.primitive.name for e in big.eqns].count("scan"), 1)

    def test_keys_per_layer_and_two_stacks_get_distinct_paths(self):
        def f(x):
            noisy = L.layer_stack(3)(lambda x: Linear(3)(x) + jax.random.normal(
                mh.next_rng_key(), x.shape))
            return noisy(noisy(x) * 0)  # each call builds its own Linear

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(list(shapes(params).items()), [
            ("~/Linear_0/__call__/w", (3, 3, 3)), ("~/Linear_0/__call__/b", (3, 3)),
            ("~/Linear_1/__call__/w", (3, 3, 3)), ("~/Linear_1/__call__/b", (3, 3))])
        a, b = jax.jit(apply)(params, 1, X), jax.jit(apply)(params, 2, X)
        self.assertFalse(np.allclose(a, b))

    def test_param_shared_with_outside_is_an_error(self):
        def f(x):
            layer = Linear(3)
            x = layer(x)
            return L.layer_stack(2)(layer)(x)

        with self.assertRaisesRegex(mh.MiniHaikuError, "per-layer"):
            mh.transform(f).init(0, X)

    def test_bad_num_layers(self):
        with self.assertRaises(mh.MiniHaikuError):
            L.layer_stack(0)


if __name__ == "__main__":
    absltest.main()
