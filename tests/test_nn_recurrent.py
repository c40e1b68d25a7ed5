"""Tests of mh.nn's recurrent cores and unrolls against hand-written JAX."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh

_KEY = jax.random.PRNGKey(0)
_SIG = jax.nn.sigmoid


def _randn(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _randomize(params, seed=1):
    return {k: _randn(seed + i, v.shape) for i, (k, v) in enumerate(params.items())}


def _vanilla_step(p, x, h):
    pre = "~/VanillaRNN_0/__call__/Linear_{}/__call__/{}"
    h = jax.nn.relu(x @ p[pre.format(0, "w")] + p[pre.format(0, "b")]
                    + h @ p[pre.format(1, "w")] + p[pre.format(1, "b")])
    return h, h


def _lstm_step(p, x, state):
    h, c = state
    pre = "~/LSTM_0/__call__/Linear_0/__call__/"
    w, b = p[pre + "w"], p[pre + "b"]
    n = h.shape[-1]
    gates = x @ w[:x.shape[-1]] + h @ w[x.shape[-1]:] + b
    i, g, f, o = (gates[..., k * n:(k + 1) * n] for k in range(4))
    c = _SIG(f + 1.0) * c + _SIG(i) * jnp.tanh(g)
    h = _SIG(o) * jnp.tanh(c)
    return h, (h, c)


def _gru_step(p, x, h):
    w_i, w_h, b = (p["~/GRU_0/__call__/" + n] for n in ("w_i", "w_h", "b"))
    n = h.shape[-1]
    cols = lambda a, k: a[..., k * n:(k + 1) * n]  # noqa: E731
    z = _SIG(x @ cols(w_i, 0) + h @ cols(w_h, 0) + cols(b, 0))
    r = _SIG(x @ cols(w_i, 1) + h @ cols(w_h, 1) + cols(b, 1))
    a = jnp.tanh(x @ cols(w_i, 2) + (r * h) @ cols(w_h, 2) + cols(b, 2))
    h = (1 - z) * h + z * a
    return h, h


_CORES = {"VanillaRNN": (mh.nn.VanillaRNN, _vanilla_step),
          "LSTM": (mh.nn.LSTM, _lstm_step),
          "GRU": (mh.nn.GRU, _gru_step)}


def _one_step(name, hidden):
    def f(x, state):
        return _CORES[name][0](hidden)(x, state)
    return mh.transform(f)


def _initial(name, hidden, batch):
    f = mh.transform(lambda: _CORES[name][0](hidden).initial_state(batch))
    return f.apply({}, None)


class CoreTest(parameterized.TestCase):

    @parameterized.parameters(*_CORES)
    def test_step_matches_formula(self, name):
        x = _randn(0, [3, 5])
        state = jax.tree_util.tree_map(lambda z: _randn(9, z.shape),
                                       _initial(name, 4, 3))
        f = _one_step(name, 4)
        params = _randomize(f.init(_KEY, x, state))
        out, new_state = f.apply(params, None, x, state)
        want_out, want_state = _CORES[name][1](params, x, tuple(state)
                                               if name == "LSTM" else state)
        np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(new_state),
                        jax.tree_util.tree_leaves(want_state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    @parameterized.parameters(*_CORES)
    def test_unbatched_step(self, name):
        x = _randn(0, [3, 5])
        f = _one_step(name, 4)
        params = f.init(_KEY, x, _initial(name, 4, 3))
        batched, _ = f.apply(params, None, x, _initial(name, 4, 3))
        single, _ = f.apply(params, None, x[1], _initial(name, 4, None))
        np.testing.assert_allclose(single, batched[1], rtol=1e-5, atol=1e-6)

    def test_initial_state(self):
        state = _initial("LSTM", 4, 2)
        self.assertIsInstance(state, mh.nn.LSTMState)
        self.assertEqual((state.hidden.shape, state.cell.shape), ((2, 4), (2, 4)))
        np.testing.assert_array_equal(state.cell, 0.0)
        self.assertEqual(_initial("GRU", 3, None).shape, (3,))
        self.assertEqual(_initial("VanillaRNN", 3, 5).shape, (5, 3))

    def test_param_layouts(self):
        x = jnp.ones([2, 5])
        shapes = lambda name: {k: v.shape for k, v in _one_step(name, 4).init(  # noqa: E731
            _KEY, x, _initial(name, 4, 2)).items()}
        self.assertEqual(shapes("LSTM"), {"~/LSTM_0/__call__/Linear_0/__call__/w": (9, 16),
                                          "~/LSTM_0/__call__/Linear_0/__call__/b": (16,)})
        self.assertEqual(shapes("GRU"), {"~/GRU_0/__call__/w_i": (5, 12),
                                         "~/GRU_0/__call__/w_h": (4, 12),
                                         "~/GRU_0/__call__/b": (12,)})
        no_bias = mh.transform(lambda x, s: mh.nn.VanillaRNN(4, double_bias=False)(x, s))
        self.assertLen(no_bias.init(_KEY, x, jnp.zeros([2, 4])), 3)

    @parameterized.parameters(*_CORES)
    def test_wrong_input_rank_is_an_error(self, name):
        f = _one_step(name, 4)
        with self.assertRaisesRegex(mh.ModuleInputError,
                                    rf"{name}_0.*shape \(2, 3, 5\).*\[batch, features\]"):
            f.init(_KEY, jnp.ones([2, 3, 5]), _initial(name, 4, 2))

    @parameterized.parameters(*_CORES)
    def test_mismatched_hidden_size_is_an_error(self, name):
        f = _one_step(name, 4)
        with self.assertRaisesRegex(mh.ModuleInputError,
                                    rf"{name}_0.*hidden_size=4.*\(2, 3\).*needs shape \(2, 4\)"):
            f.init(_KEY, jnp.ones([2, 5]), _initial(name, 3, 2))

    def test_mismatched_batch_is_an_error(self):
        with self.assertRaisesRegex(mh.ModuleInputError, r"needs shape \(2, 4\)"):
            _one_step("GRU", 4).init(_KEY, jnp.ones([2, 5]), jnp.zeros([3, 4]))

    def test_lstm_state_must_be_a_pair(self):
        with self.assertRaisesRegex(mh.ModuleInputError, "LSTMState"):
            _one_step("LSTM", 4).init(_KEY, jnp.ones([2, 5]), jnp.zeros([2, 4]))


def _unroll(name, unroll_fn, **kwargs):
    def f(xs, state):
        return unroll_fn(_CORES[name][0](4), xs, state, **kwargs)
    return mh.transform(f)


def _reference_unroll(name, params, xs, state):
    step = _CORES[name][1]
    state = tuple(state) if name == "LSTM" else state
    outs = []
    for x in xs:
        out, state = step(params, x, state)
        outs.append(out)
    return jnp.stack(outs), state


class UnrollTest(parameterized.TestCase):

    @parameterized.product(name=list(_CORES), dynamic=[False, True])
    def test_matches_python_loop(self, name, dynamic):
        unroll = mh.nn.dynamic_unroll if dynamic else mh.nn.static_unroll
        f = _unroll(name, unroll)
        xs = _randn(0, [5, 2, 3])
        state = _initial(name, 4, 2)
        params = _randomize(f.init(_KEY, xs, state))
        self.assertLen(params, {"VanillaRNN": 4, "LSTM": 2, "GRU": 3}[name])
        outs, final = f.apply(params, None, xs, state)
        want_outs, want_final = _reference_unroll(name, params, xs, state)
        np.testing.assert_allclose(outs, want_outs, rtol=1e-5, atol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(want_final),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    @parameterized.parameters(mh.nn.static_unroll, mh.nn.dynamic_unroll)
    def test_batch_major(self, unroll):
        xs = _randn(0, [5, 2, 3])
        state = _initial("LSTM", 4, 2)
        tm, bm = _unroll("LSTM", unroll), _unroll("LSTM", unroll, time_major=False)
        params = tm.init(_KEY, xs, state)
        outs, final = tm.apply(params, None, xs, state)
        outs_bm, final_bm = bm.apply(params, None, jnp.swapaxes(xs, 0, 1), state)
        np.testing.assert_allclose(outs_bm, jnp.swapaxes(outs, 0, 1), rtol=1e-6)
        np.testing.assert_allclose(final_bm.cell, final.cell, rtol=1e-6)

    def test_dynamic_reverse_and_all_states(self):
        xs = _randn(0, [4, 2, 3])
        state = _initial("GRU", 4, 2)
        f = _unroll("GRU", mh.nn.dynamic_unroll, reverse=True, return_all_states=True)
        params = _randomize(f.init(_KEY, xs, state))
        outs, states = f.apply(params, None, xs, state)
        want, _ = _reference_unroll("GRU", params, xs[::-1], state)
        np.testing.assert_allclose(outs, want[::-1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(states, outs, rtol=1e-6)  # GRU: output == state

    def test_dynamic_under_jit_and_grad(self):
        xs = _randn(0, [6, 2, 3])
        state = _initial("LSTM", 4, 2)
        dyn, sta = _unroll("LSTM", mh.nn.dynamic_unroll), _unroll("LSTM", mh.nn.static_unroll)
        params = dyn.init(_KEY, xs, state)
        loss = lambda f: lambda p: jnp.sum(f.apply(p, None, xs, state)[0] ** 2)  # noqa: E731
        g_dyn = jax.jit(jax.grad(loss(dyn)))(params)
        g_sta = jax.grad(loss(sta))(params)
        for k in params:
            np.testing.assert_allclose(g_dyn[k], g_sta[k], rtol=1e-4, atol=1e-5)

    def test_dynamic_unroll_of_pure_function_outside_transform(self):
        def core(x, h):
            h = jnp.tanh(x + h)
            return 2 * h, h
        outs, h = mh.nn.dynamic_unroll(core, jnp.ones([3, 2]), jnp.zeros([2]))
        want = jnp.zeros([2])
        for _ in range(3):
            want = jnp.tanh(1 + want)
        np.testing.assert_allclose(h, want, rtol=1e-6)
        np.testing.assert_allclose(outs[-1], 2 * want, rtol=1e-6)

    @parameterized.parameters(mh.nn.static_unroll, mh.nn.dynamic_unroll)
    def test_bad_sequence_is_an_error(self, unroll):
        f = _unroll("GRU", unroll, time_major=False)
        with self.assertRaisesRegex(mh.MiniHaikuError, r"\[B, T, \.\.\.\].*\(5,\)"):
            f.init(_KEY, jnp.ones([5]), _initial("GRU", 4, 2))

    def test_static_unroll_over_zero_steps_is_empty_like_dynamic(self):
        xs = jnp.zeros([0, 2, 3])
        state = _initial("GRU", 4, 2)
        outs = []
        for unroll in (mh.nn.static_unroll, mh.nn.dynamic_unroll):
            f = _unroll("GRU", unroll)
            params = f.init(_KEY, xs, state)
            self.assertLen(params, 3)
            outs.append(f.apply(params, None, xs, state))
        for (o, s) in outs:
            self.assertEqual(o.shape, (0, 2, 4))
            np.testing.assert_array_equal(s, state)

    @parameterized.parameters(mh.nn.static_unroll, mh.nn.dynamic_unroll)
    def test_batch_major_input_as_time_major_suggests_time_major_false(self, unroll):
        f = _unroll("LSTM", unroll)
        with self.assertRaisesRegex(mh.ModuleInputError, r"batch size 2.*time_major=False"):
            f.init(_KEY, jnp.ones([2, 5, 3]), _initial("LSTM", 4, 2))
        g = _unroll("LSTM", unroll, time_major=False)
        with self.assertRaisesRegex(mh.ModuleInputError, r"batch size 2.*time_major=True"):
            g.init(_KEY, jnp.ones([5, 2, 3]), _initial("LSTM", 4, 2))


if __name__ == "__main__":
    absltest.main()
