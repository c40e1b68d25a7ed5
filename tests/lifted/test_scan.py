"""mh.lifted.scan against jax.lax.scan with explicit params."""


import jax
import jax.numpy as jnp
import pytest
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_all_distinct, assert_close, jgrad, lin, shapes


class ScanTest(parameterized.TestCase):

    @staticmethod
    def _rnn(reverse=False):
        def f(xs):
            cell_in, cell_h = Linear(5), Linear(5, name="hidden")

            def step(h, x):
                n = mh.get_state("steps", (), jnp.int32, init=jnp.zeros)
                mh.set_state("steps", n + 1)
                h = jnp.tanh(cell_in(x) + cell_h(h))
                return h, (h, mh.next_rng_key())

            return L.scan(step, jnp.zeros((xs.shape[1], 5)), xs, reverse=reverse)
        return mh.transform_with_state(f)

    @staticmethod
    def _reference(params, xs, reverse=False):
        def step(h, x):
            h = jnp.tanh(lin(params, "~/Linear_0/__call__", x)
                         + lin(params, "~/hidden_0/__call__", h))
            return h, h
        return jax.lax.scan(step, jnp.zeros((xs.shape[1], 5)), xs, reverse=reverse)

    @parameterized.parameters(False, True)
    def test_values_state_keys_match_reference(self, reverse):
        xs = jax.random.normal(jax.random.PRNGKey(0), (6, 2, 3))
        init, apply = self._rnn(reverse)
        params, state = init(0, xs)
        # Shared across steps: no leading time axis.
        self.assertEqual(shapes(params), {
            "~/Linear_0/__call__/w": (3, 5), "~/Linear_0/__call__/b": (5,),
            "~/hidden_0/__call__/w": (5, 5), "~/hidden_0/__call__/b": (5,)})
        self.assertEqual(dict(state), {"~/steps": 0})
        (h, (hs, keys)), new_state = apply(params, state, 1, xs)
        want_h, want_hs = self._reference(params, xs, reverse)
        assert_close(h, want_h)
        assert_close(hs, want_hs)
        self.assertEqual(int(new_state["~/steps"]), 6)
        assert_all_distinct(self, keys)
        # jit gives the same; the input state was not mutated.
        (h_jit, _), _ = jax.jit(apply)(params, state, 1, xs)
        assert_close(h_jit, want_h)
        self.assertEqual(int(state["~/steps"]), 0)

    def test_grad_matches_reference(self):
        xs = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 3))
        init, apply = self._rnn()
        params, state = init(0, xs)
        got = jgrad(lambda p: jnp.sum(apply(p, state, 1, xs)[0][0] ** 2))(params)
        want = jgrad(lambda p: jnp.sum(self._reference(p, xs)[0] ** 2))(params)
        assert_close(got, want)

    def test_length_zero(self):
        init, apply = self._rnn()
        xs = jnp.zeros((0, 2, 3))
        params, state = init(0, xs)
        self.assertLen(params, 4)
        (h, (hs, _)), state = apply(params, state, 1, xs)
        assert_close(h, jnp.zeros((2, 5)))
        self.assertEqual(hs.shape, (0, 2, 5))
        self.assertEqual(int(state["~/steps"]), 0)

    def test_xs_none_with_length_and_modules_built_in_body(self):
        def f(x):
            def step(c, _):
                return Linear(3)(c), None   # built inside: same params every step
            return L.scan(step, x, None, length=3)[0]

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b"])
        want = X
        for _ in range(3):
            want = lin(params, "~/Linear_0/__call__", want)
        assert_close(apply(params, None, X), want, rtol=1e-4)

    def test_retrace_on_weak_carry_keeps_module_names(self):
        # A weakly typed int carry (0) that becomes float makes lax.scan trace
        # the body twice.
        def f(xs):
            return L.scan(lambda c, x: (c + jnp.sum(Linear(1)(x)), None), 0, xs)[0]

        init, apply = mh.transform(f)
        xs = jnp.ones((3, 2, 3))
        params = init(0, xs)
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b"])
        assert_close(apply(params, None, xs),
                     3 * jnp.sum(lin(params, "~/Linear_0/__call__", xs[0])))

    def test_init_output_equals_apply_output(self):
        xs = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 3))
        seen = []

        def f(xs):
            def step(h, x):
                h = jnp.tanh(Linear(5)(x) + h) + jax.random.normal(mh.next_rng_key(), h.shape)
                return h, h
            out = L.scan(step, jnp.zeros((2, 5)), xs)
            seen.append(out)
            return out

        init, apply = mh.transform(f)
        params = init(7, xs)
        assert_close(seen[0], apply(params, 7, xs))

    @pytest.mark.slow  # Gradients through scan are checked by test_grad_matches_reference.
    def test_trains_a_recurrent_cell(self):
        xs = jax.random.normal(jax.random.PRNGKey(0), (5, 8, 3))
        target = jnp.sin(jnp.cumsum(xs[..., :1], axis=0))

        def f(xs):
            cell_in, cell_h, readout = Linear(8), Linear(8), Linear(1)

            def step(h, x):
                h = jnp.tanh(cell_in(x) + cell_h(h))
                return h, readout(h)

            return L.scan(step, jnp.zeros((xs.shape[1], 8)), xs)[1]

        init, apply = mh.without_apply_rng(mh.transform(f))
        params = init(0, xs)

        def loss(p):
            return jnp.mean((apply(p, xs) - target) ** 2)

        def ref_loss(p):
            def step(h, x):
                h = jnp.tanh(lin(p, "~/Linear_0/__call__", x) + lin(p, "~/Linear_1/__call__", h))
                return h, lin(p, "~/Linear_2/__call__", h)
            return jnp.mean((jax.lax.scan(step, jnp.zeros((8, 8)), xs)[1] - target) ** 2)

        @jax.jit
        def sgd(p):
            return jax.tree_util.tree_map(lambda w, g: w - 0.05 * g, p, jax.grad(loss)(p))

        assert_close(jgrad(loss)(params), jax.grad(ref_loss)(params))
        first = jax.jit(loss)(params)
        for _ in range(3):
            params = sgd(params)
        self.assertLess(float(jax.jit(loss)(params)), float(first))


if __name__ == "__main__":
    absltest.main()
