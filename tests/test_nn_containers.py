"""Sequential, Reshape/Flatten, Bias, DeepRNN and ResetCore: formulas, dm-haiku,
paths, lifted use and errors."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers import haiku_compare as ref

_L = "~/Linear_{}/__call__/"


class SequentialTest(absltest.TestCase):

    def test_layers_keep_their_paths_and_compose(self):
        def net(x):
            return mh.nn.Sequential([mh.nn.Linear(4), jax.nn.relu, mh.nn.Linear(2)])(x)

        x = ref.randn(0, [3, 5])
        f = mh.transform(net)
        params = ref.randomize(f.init(0, x))
        self.assertEqual(list(params), [_L.format(0) + "w", _L.format(0) + "b",
                                        _L.format(1) + "w", _L.format(1) + "b"])
        h = jax.nn.relu(x @ params[_L.format(0) + "w"] + params[_L.format(0) + "b"])
        ref.assert_close(f.apply(params, None, x),
                         h @ params[_L.format(1) + "w"] + params[_L.format(1) + "b"])

    def test_same_as_haiku(self):
        ref.compare(
            lambda x: mh.nn.Sequential([mh.nn.Linear(4), jax.nn.tanh, mh.nn.Linear(3)])(x),
            lambda x: hk.Sequential([hk.Linear(4), jax.nn.tanh, hk.Linear(3)])(x),
            lambda p: {"linear": ref.module_params(p, _L.format(0)),
                       "linear_1": ref.module_params(p, _L.format(1))},
            ref.randn(0, [2, 5]))

    def test_extra_args_go_to_first_layer_and_function_params_scope(self):
        def first(x, scale):
            return x * scale * mh.get_param("s", (), init=jax.nn.initializers.ones)

        f = mh.transform(lambda x: mh.nn.Sequential([first, jnp.sin])(x, 3.0))
        params = f.init(0, jnp.ones([2]))
        self.assertEqual(list(params), ["~/Sequential_0/__call__/s"])
        ref.assert_close(f.apply(params, None, jnp.ones([2])), jnp.sin(3.0 * jnp.ones([2])))

    def test_modules_built_inside_live_under_it(self):
        f = mh.transform(lambda x: mh.nn.Sequential([lambda x: mh.nn.Linear(2)(x)])(x))
        self.assertEqual(list(f.init(0, jnp.ones([1, 3]))),
                         ["~/Sequential_0/__call__/Linear_0/__call__/w",
                          "~/Sequential_0/__call__/Linear_0/__call__/b"])

    def test_non_callable_layer_is_an_error(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "Sequential_0.*layer 1.*not callable"):
            mh.transform(lambda x: mh.nn.Sequential([jnp.sin, 3])(x)).init(0, jnp.ones(2))


class ReshapeTest(parameterized.TestCase):

    @parameterized.parameters(
        dict(shape=(-1,), preserve=1, x=[2, 3, 4]),
        dict(shape=(4, -1), preserve=1, x=[2, 3, 8]),
        dict(shape=(6,), preserve=2, x=[2, 3, 2, 3]),
        dict(shape=(-1,), preserve=-2, x=[5, 3, 4]),
        dict(shape=(2, 2), preserve=3, x=[2, 3]),
    )
    def test_same_as_haiku(self, shape, preserve, x):
        x = ref.randn(0, x)
        ours = mh.transform(lambda x: mh.nn.Reshape(shape, preserve)(x)).apply({}, None, x)
        theirs = hk.transform(lambda x: hk.Reshape(shape, preserve)(x)).apply({}, None, x)
        self.assertEqual(ours.shape, theirs.shape)
        np.testing.assert_array_equal(ours, theirs)

    def test_flatten(self):
        x = ref.randn(0, [2, 3, 4, 5])
        f = mh.transform(lambda x: (mh.nn.Flatten()(x), mh.nn.Flatten(2)(x)))
        a, b = f.apply({}, None, x)
        np.testing.assert_array_equal(a, x.reshape(2, 60))
        np.testing.assert_array_equal(b, x.reshape(2, 3, 20))

    def test_errors(self):
        run = lambda m, x: mh.transform(lambda x: m()(x)).apply({}, None, x)  # noqa: E731
        with self.assertRaisesRegex(mh.InvalidArgumentError, "Reshape_0.*preserve_dims=0"):
            run(lambda: mh.nn.Reshape((2,), 0), jnp.ones([2, 2]))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "Reshape_0.*at most one -1"):
            run(lambda: mh.nn.Reshape((-1, -1)), jnp.ones([2, 2]))
        with self.assertRaisesRegex(mh.ModuleInputError, r"Reshape_0.*\(3, 4\).*\(5,\)"):
            run(lambda: mh.nn.Reshape((5,)), jnp.ones([2, 3, 4]))
        with self.assertRaisesRegex(mh.ModuleInputError, "not a multiple of 5"):
            run(lambda: mh.nn.Reshape((5, -1)), jnp.ones([2, 3, 4]))


class BiasTest(parameterized.TestCase):

    @parameterized.parameters(dict(bias_dims=None), dict(bias_dims=[-1]),
                              dict(bias_dims=[1]), dict(bias_dims=[]), dict(bias_dims=[1, 3]))
    def test_same_as_haiku(self, bias_dims):
        ref.compare(lambda x: mh.nn.Bias(bias_dims=bias_dims)(x),
                    lambda x: hk.Bias(bias_dims=bias_dims)(x),
                    lambda p: {"bias": ref.module_params(p, "~/Bias_0/__call__/", ("b",))},
                    ref.randn(0, [2, 3, 4, 5]))

    def test_multiplier_and_formula(self):
        x = ref.randn(0, [2, 3])
        f = mh.transform(lambda x: mh.nn.Bias()(mh.nn.Bias(name="b2")(x), multiplier=-2.0))
        params = ref.randomize(f.init(0, x))
        self.assertEqual(list(params), ["~/b2_0/__call__/b", "~/Bias_0/__call__/b"])
        ref.assert_close(f.apply(params, None, x),
                         x + params["~/b2_0/__call__/b"] - 2 * params["~/Bias_0/__call__/b"])

    def test_under_layer_stack(self):
        f = mh.transform(lambda x: mh.lifted.layer_stack(3)(lambda x: mh.nn.Bias()(x))(x))
        x = ref.randn(0, [2, 4])
        params = ref.randomize(f.init(0, x))
        (b,) = params.values()
        self.assertEqual(b.shape, (3, 4))
        ref.assert_close(f.apply(params, None, x), x + b.sum(0))

    def test_errors(self):
        init = lambda m, x: mh.transform(lambda x: m(x)).init(0, x)  # noqa: E731
        with self.assertRaisesRegex(mh.ModuleInputError, "Bias_0.*rank >= 2"):
            init(lambda x: mh.nn.Bias()(x), jnp.ones(3))
        with self.assertRaisesRegex(mh.ModuleInputError, "Bias_0.*bias_dims.*batch"):
            init(lambda x: mh.nn.Bias(bias_dims=[0])(x), jnp.ones([2, 3]))
        with self.assertRaisesRegex(mh.ModuleInputError, r"Bias_0.*output_size=\(4,\)"):
            init(lambda x: mh.nn.Bias(output_size=[4])(x), jnp.ones([2, 3]))


class DeepRNNTest(absltest.TestCase):

    def test_same_as_haiku_under_dynamic_unroll(self):
        def ours(xs):
            core = mh.nn.DeepRNN([mh.nn.LSTM(4), jax.nn.relu, mh.nn.GRU(3)])
            return mh.nn.dynamic_unroll(core, xs, core.initial_state(2))

        def theirs(xs):
            core = hk.DeepRNN([hk.LSTM(4), jax.nn.relu, hk.GRU(3)])
            return hk.dynamic_unroll(core, xs, core.initial_state(2))

        def to_haiku(p):
            # The cores are built before the DeepRNN (in its argument list), at
            # top level, and keep those paths.
            return {"lstm/linear": ref.module_params(p, "~/LSTM_0/__call__/Linear_0/__call__/"),
                    "gru": ref.module_params(p, "~/GRU_0/__call__/", ("w_i", "w_h", "b"))}

        ref.compare(ours, theirs, to_haiku, ref.randn(0, [5, 2, 3]))

    def test_state_is_a_tuple_per_core_and_static_unroll_agrees(self):
        def net(xs, unroll):
            core = mh.nn.DeepRNN([mh.nn.VanillaRNN(3), mh.nn.VanillaRNN(2)])
            state = core.initial_state(2)
            self.assertIsInstance(state, tuple)
            self.assertEqual([s.shape for s in state], [(2, 3), (2, 2)])
            return unroll(core, xs, state)

        xs = ref.randn(0, [4, 2, 5])
        f = mh.transform(lambda xs: net(xs, mh.nn.dynamic_unroll))
        g = mh.transform(lambda xs: net(xs, mh.nn.static_unroll))
        params = ref.randomize(f.init(0, xs))
        ref.assert_close(f.apply(params, None, xs), g.apply(params, None, xs))

    def test_bad_state_is_an_error(self):
        f = mh.transform(lambda x: mh.nn.DeepRNN([mh.nn.GRU(2), mh.nn.GRU(2)])(x, ()))
        with self.assertRaisesRegex(mh.ModuleInputError, "DeepRNN_0.*2 cores.*length 0"):
            f.init(0, jnp.ones([1, 3]))


class ResetCoreTest(absltest.TestCase):

    def test_resets_where_asked_same_as_haiku(self):
        xs = ref.randn(0, [6, 3, 2])
        resets = jnp.array([[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]],
                           bool)
        state0 = mh.nn.LSTMState(ref.randn(5, [3, 4]), ref.randn(6, [3, 4]))

        def ours(xs, resets):
            core = mh.nn.ResetCore(mh.nn.LSTM(4))
            return mh.nn.dynamic_unroll(core, (xs, resets), state0)

        def theirs(xs, resets):
            core = hk.ResetCore(hk.LSTM(4))
            return hk.dynamic_unroll(core, (xs, resets), hk.LSTMState(*state0))

        ref.compare(ours, theirs,
                    lambda p: {"lstm/linear": ref.module_params(
                        p, "~/LSTM_0/__call__/Linear_0/__call__/")},
                    xs, resets)

    def test_formula_against_manual_reset(self):
        core_fn = lambda: mh.nn.VanillaRNN(3)  # noqa: E731
        xs = ref.randn(0, [4, 2, 2])
        resets = jnp.array([[0, 1], [0, 0], [1, 1], [0, 1]], bool)
        h0 = ref.randn(1, [2, 3])
        f = mh.transform(lambda xs, r: mh.nn.dynamic_unroll(
            mh.nn.ResetCore(core_fn()), (xs, r), h0))
        g = mh.transform(lambda x, h: core_fn()(x, h))
        params = ref.randomize(f.init(0, xs, resets))
        h, outs = h0, []
        for t in range(4):
            h = jnp.where(resets[t][:, None], 0.0, h)
            out, h = g.apply(params, None, xs[t], h)
            outs.append(out)
        ref.assert_close(f.apply(params, None, xs, resets), (jnp.stack(outs), h))

    def test_bad_inputs(self):
        f = mh.transform(lambda x: mh.nn.ResetCore(mh.nn.GRU(2))(x, jnp.zeros([3, 2])))
        with self.assertRaisesRegex(mh.ModuleInputError, r"ResetCore_0.*\(x, should_reset\)"):
            f.init(0, jnp.ones([3, 4]))
        g = mh.transform(lambda x: mh.nn.ResetCore(mh.nn.GRU(2))(
            (x, jnp.zeros([4], bool)), jnp.zeros([3, 2])))
        with self.assertRaisesRegex(mh.ModuleInputError, r"should_reset of shape \(4,\)"):
            g.init(0, jnp.ones([3, 4]))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "no initial_state"):
            mh.transform(lambda: mh.nn.ResetCore(jnp.sin)).init(0)


if __name__ == "__main__":
    absltest.main()
