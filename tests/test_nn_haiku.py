"""mh.nn against dm-haiku itself: same weights in, same numbers out.

dm-haiku is a test-only dependency (the `test` extra); the library never
imports it.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers import assert_close
from helpers.haiku_compare import KEY, compare, randn, randomize


class HaikuTestCase(parameterized.TestCase):

    def compare(self, mh_fn, hk_fn, to_haiku, *args):
        """Inits mh_fn, copies its (randomised) params into Haiku's layout, compares."""
        compare(mh_fn, hk_fn, to_haiku, *args, grads=False)


def _wb(params, prefix):
    return {"w": params[prefix + "w"], "b": params[prefix + "b"]}


def _gru_to_haiku(params):
    return {"gru": {n: params["~/GRU_0/__call__/" + n] for n in ("w_i", "w_h", "b")}}


class HaikuEquivalenceTest(HaikuTestCase):

    def test_linear(self):
        self.compare(lambda x: mh.nn.Linear(3)(x), lambda x: hk.Linear(3)(x),
                     lambda p: {"linear": _wb(p, "~/Linear_0/__call__/")}, randn(0, [2, 4, 5]))

    def test_mlp(self):
        sizes = [8, 6, 2]
        self.compare(
            lambda x: mh.nn.MLP(sizes, activation=jax.nn.gelu, activate_final=True)(x),
            lambda x: hk.nets.MLP(sizes, activation=jax.nn.gelu, activate_final=True)(x),
            lambda p: {f"mlp/~/linear_{i}": _wb(p, f"~/MLP_0/__call__/Linear_{i}/__call__/")
                       for i in range(3)},
            randn(0, [4, 5]))

    @parameterized.parameters((-1, 1e-5), ((1, 2), 1e-3))
    def test_layer_norm(self, axis, eps):
        pre = "~/LayerNorm_0/__call__/"
        self.compare(
            lambda x: mh.nn.LayerNorm(axis=axis, eps=eps)(x),
            lambda x: hk.LayerNorm(axis, True, True, eps=eps, param_axis=-1)(x),
            lambda p: {"layer_norm": {"scale": p[pre + "scale"], "offset": p[pre + "offset"]}},
            randn(0, [2, 3, 4]) * 4 + 1)

    def test_embed_lookup(self):
        self.compare(lambda i: mh.nn.Embed(10, 3)(i), lambda i: hk.Embed(10, 3)(i),
                     lambda p: {"embed": {"embeddings": p["~/Embed_0/embeddings/embeddings"]}},
                     jnp.array([[0, 3], [9, 3]]))

    def test_dropout_same_key_same_mask(self):
        x = randn(0, [50])
        ours = mh.transform(lambda x: mh.nn.dropout(0.3, x)).apply({}, 7, x)
        theirs = hk.dropout(next(mh.PRNGSequence(7)), 0.3, x)
        np.testing.assert_array_equal(ours, theirs)

    def test_vanilla_rnn(self):
        pre = "~/VanillaRNN_0/__call__/Linear_{}/__call__/"
        self.compare(lambda x, h: mh.nn.VanillaRNN(4)(x, h),
                     lambda x, h: hk.VanillaRNN(4)(x, h),
                     lambda p: {"vanilla_rnn/linear": _wb(p, pre.format(0)),
                                "vanilla_rnn/linear_1": _wb(p, pre.format(1))},
                     randn(0, [3, 5]), randn(1, [3, 4]))

    def test_lstm(self):
        state = mh.nn.LSTMState(randn(1, [3, 4]), randn(2, [3, 4]))
        self.compare(lambda x, s: mh.nn.LSTM(4)(x, s),
                     lambda x, s: hk.LSTM(4)(x, hk.LSTMState(*s)),
                     lambda p: {"lstm/linear": _wb(p, "~/LSTM_0/__call__/Linear_0/__call__/")},
                     randn(0, [3, 5]), state)

    def test_gru(self):
        self.compare(lambda x, h: mh.nn.GRU(4)(x, h), lambda x, h: hk.GRU(4)(x, h),
                     _gru_to_haiku,
                     randn(0, [3, 5]), randn(1, [3, 4]))

    @parameterized.parameters((True,), (False,))
    def test_dynamic_unroll_lstm(self, time_major):
        def ours(xs):
            core = mh.nn.LSTM(4)
            return mh.nn.dynamic_unroll(core, xs, core.initial_state(2), time_major=time_major)

        def theirs(xs):
            core = hk.LSTM(4)
            return hk.dynamic_unroll(core, xs, core.initial_state(2), time_major=time_major)

        self.compare(ours, theirs,
                     lambda p: {"lstm/linear": _wb(p, "~/LSTM_0/__call__/Linear_0/__call__/")},
                     randn(0, [6, 2, 3] if time_major else [2, 6, 3]))

    def test_static_unroll_gru(self):
        def ours(xs):
            core = mh.nn.GRU(4)
            return mh.nn.static_unroll(core, xs, core.initial_state(2))

        def theirs(xs):
            core = hk.GRU(4)
            return hk.static_unroll(core, xs, core.initial_state(2))

        self.compare(ours, theirs,
                     _gru_to_haiku,
                     randn(0, [5, 2, 3]))


class HaikuBatchNormTest(HaikuTestCase):

    def test_training_steps_then_eval(self):
        decay, eps = 0.8, 1e-3
        ours = mh.transform_with_state(lambda x, t: mh.nn.BatchNorm(decay, eps)(x, t))
        theirs = hk.transform_with_state(lambda x, t: hk.BatchNorm(True, True, decay, eps)(x, t))
        xs = [randn(i, [8, 3]) * (i + 1) + i for i in range(4)]
        params, state = ours.init(KEY, xs[0], True)
        params = randomize(params)
        pre = "~/BatchNorm_0/__call__/"   # params
        hk_params = {"batch_norm": {n: params[pre + n][None] for n in ("scale", "offset")}}
        _, hk_state = theirs.init(KEY, xs[0], True)
        for x in xs:
            out, state = ours.apply(params, state, None, x, True)
            hk_out, hk_state = theirs.apply(hk_params, hk_state, None, x, True)
            assert_close(out, hk_out)
        for name in ("mean", "var"):
            ema = hk_state[f"batch_norm/~/{name}_ema"]
            # Our statistics live in the EMA submodules, as dm-haiku's do.
            ours_ema = f"~/BatchNorm_0/__init__/{name}_ema_0/"
            self.assertEqual(int(state[ours_ema + "counter"]), int(ema["counter"]))
            assert_close(state[ours_ema + "hidden"], ema["hidden"].ravel())
            assert_close(state[ours_ema + "average"], ema["average"].ravel())
        out, _ = ours.apply(params, state, None, xs[0], False)
        hk_out, _ = theirs.apply(hk_params, hk_state, None, xs[0], False)
        assert_close(out, hk_out)


if __name__ == "__main__":
    absltest.main()
