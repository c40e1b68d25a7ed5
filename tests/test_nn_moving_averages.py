"""ExponentialMovingAverage, EMAParamsTree, BatchNorm's init state and Linear.input_size.

Checked against dm-haiku 0.0.17 (state values step by step) and hand-written
formulas.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh

KEY = jax.random.PRNGKey(0)


def randn(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


class ExponentialMovingAverageTest(parameterized.TestCase):

    @parameterized.parameters((0.9, True, 0), (0.5, False, 0), (0.8, False, 2))
    def test_matches_haiku_step_by_step(self, decay, zero_debias, warmup):
        ours = mh.transform_with_state(
            lambda x: mh.nn.ExponentialMovingAverage(decay, zero_debias, warmup)(x))
        theirs = hk.transform_with_state(
            lambda x: hk.ExponentialMovingAverage(decay, zero_debias, warmup)(x))
        xs = [randn(i, [3]) for i in range(5)]
        _, state = ours.init(None, xs[0])
        _, hk_state = theirs.init(None, xs[0])
        p = "~/ExponentialMovingAverage_0/"
        self.assertEqual(sorted(state), [p + "average", p + "counter", p + "hidden"])
        for n in ("counter", "hidden", "average"):
            np.testing.assert_allclose(state[p + n], hk_state["exponential_moving_average"][n])
        hidden = np.zeros(3)
        for t, x in enumerate(xs, start=1 - warmup):
            out, state = ours.apply({}, state, None, x)
            hk_out, hk_state = theirs.apply({}, hk_state, None, x)
            np.testing.assert_allclose(out, hk_out, rtol=1e-6, atol=1e-6)
            d = 0.0 if t <= 0 else decay
            hidden = d * hidden + (1 - d) * np.asarray(x)
            want = hidden / (1 - d ** t) if zero_debias else hidden
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
            self.assertEqual(int(state[p + "counter"]), t)

    def test_update_stats_false_leaves_state_and_average_reads_it(self):
        def f(x, update):
            ema = mh.nn.ExponentialMovingAverage(0.5)
            out = ema(x, update_stats=update)
            return out, ema.average

        t = mh.transform_with_state(f)
        _, state = t.init(None, jnp.ones([2]), True)
        (out, avg), new = t.apply({}, state, None, 3 * jnp.ones([2]), True)
        np.testing.assert_allclose(avg, out)
        (_, avg2), newer = t.apply({}, new, None, jnp.zeros([2]), False)
        np.testing.assert_allclose(avg2, out)
        for k in new:
            np.testing.assert_array_equal(newer[k], new[k])

    def test_initialize_creates_zeros_under_call_scope(self):
        def f():
            ema = mh.nn.ExponentialMovingAverage(0.5)
            ema.initialize((2, 3))
            return ema.average

        t = mh.transform_with_state(f)
        _, state = t.init(None)
        out, _ = t.apply({}, state, None)
        np.testing.assert_array_equal(out, np.zeros((2, 3)))
        self.assertEqual(sorted(state), ["~/ExponentialMovingAverage_0/average",
                                         "~/ExponentialMovingAverage_0/hidden"])

    def test_bad_arguments(self):
        def build(**kw):
            return mh.transform_with_state(
                lambda: mh.nn.ExponentialMovingAverage(**kw)(1.0)).init(None)

        with self.assertRaisesRegex(mh.InvalidArgumentError, "decay=1.5.*Fix"):
            build(decay=1.5)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "warmup_length=-1"):
            build(decay=0.5, warmup_length=-1)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "zero_debias=False"):
            build(decay=0.5, warmup_length=3)


class EMAParamsTreeTest(absltest.TestCase):

    def test_matches_haiku_on_the_same_tree(self):
        net = mh.transform(lambda x: mh.nn.Linear(2)(mh.nn.Linear(3)(x)))
        params = net.init(0, jnp.ones([1, 4]))
        ours = mh.transform_with_state(
            lambda p: mh.nn.EMAParamsTree(0.9, ignore_regex=".*Linear_1.*/b")(p))
        nested = {"a": dict(params)}
        theirs = hk.transform_with_state(
            lambda p: hk.EMAParamsTree(0.9, ignore_regex=".*Linear_1.*/b")(p))
        _, state = ours.init(None, params)
        _, hk_state = theirs.init(None, nested)
        self.assertLen(state, 3 * 3)
        for step in range(3):
            p = {k: v + step for k, v in params.items()}
            out, state = ours.apply({}, state, None, p)
            hk_out, hk_state = theirs.apply({}, hk_state, None, {"a": p})
            self.assertEqual(list(out), list(p))
            for k in p:
                np.testing.assert_allclose(out[k], hk_out["a"][k], rtol=1e-6)
        np.testing.assert_array_equal(out["~/Linear_1/__call__/b"], p["~/Linear_1/__call__/b"])
        name = "_tilde___Linear_0____call____w_0"
        self.assertIn(f"~/EMAParamsTree_0/__call__/{name}/hidden", state)

    def test_not_a_mapping(self):
        with self.assertRaisesRegex(mh.ModuleInputError, "EMAParamsTree.*params dict"):
            mh.transform_with_state(lambda: mh.nn.EMAParamsTree(0.9)([1.0])).init(None)


class BatchNormInitStateTest(absltest.TestCase):

    def _pair(self, **kw):
        ours = mh.transform_with_state(
            lambda x, t, s: mh.nn.BatchNorm(0.9, 1e-3)(x, t, test_local_stats=s))
        theirs = hk.transform_with_state(
            lambda x, t, s: hk.BatchNorm(True, True, 0.9, 1e-3)(x, t, test_local_stats=s))
        return ours, theirs

    def test_init_state_and_eval_after_init_match_haiku(self):
        ours, theirs = self._pair()
        x = randn(0, [8, 3]) * 2 + 1
        params, state = ours.init(KEY, x, True, False)
        hk_params, hk_state = theirs.init(KEY, x, True, False)
        for ema in ("mean_ema", "var_ema"):
            for n in ("counter", "hidden", "average"):
                np.testing.assert_allclose(
                    state[f"~/BatchNorm_0/__init__/{ema}_0/{n}"],
                    np.asarray(hk_state[f"batch_norm/~/{ema}"][n]).reshape(-1),
                    rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            state["~/BatchNorm_0/__init__/mean_ema_0/average"], x.mean(0), rtol=1e-5)
        hk_params = {"batch_norm": {k.rsplit("/", 1)[1]: v.reshape(1, 3)
                                    for k, v in params.items()}}
        y = randn(1, [4, 3])
        out, _ = ours.apply(params, state, None, y, False, False)
        hk_out, _ = theirs.apply(hk_params, hk_state, None, y, False, False)
        np.testing.assert_allclose(out, hk_out, rtol=1e-5, atol=1e-5)

    def test_test_local_stats_uses_batch_statistics_and_keeps_state(self):
        ours, theirs = self._pair()
        x = randn(0, [8, 3]) * 2 + 1
        params, state = ours.init(KEY, x, True, False)
        _, hk_state = theirs.init(KEY, x, True, False)
        hk_params = {"batch_norm": {k.rsplit("/", 1)[1]: v.reshape(1, 3)
                                    for k, v in params.items()}}
        y = randn(1, [4, 3]) + 3
        out, new = ours.apply(params, state, None, y, False, True)
        hk_out, _ = theirs.apply(hk_params, hk_state, None, y, False, True)
        np.testing.assert_allclose(out, hk_out, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out, (y - y.mean(0)) / jnp.sqrt(y.var(0) + 1e-3),
                                   rtol=1e-4, atol=1e-4)
        for k in state:
            np.testing.assert_array_equal(new[k], state[k])

    def test_constructor_default_for_test_local_stats(self):
        f = mh.transform_with_state(
            lambda x: mh.nn.BatchNorm(0.9, test_local_stats=True)(x, False))
        x = randn(0, [6, 2]) + 5
        params, state = f.init(KEY, x)
        out, _ = f.apply(params, state, None, x * 3)
        np.testing.assert_allclose(out.mean(0), np.zeros(2), atol=1e-5)


class LinearInputSizeTest(absltest.TestCase):

    def test_none_until_called(self):
        def f(x):
            lin = mh.nn.Linear(3)
            before = lin.input_size
            lin(x)
            return before, lin.input_size

        before, after = mh.transform(f).apply(
            mh.transform(f).init(0, jnp.ones([2, 5])), None, jnp.ones([2, 5]))
        self.assertIsNone(before)
        self.assertEqual(after, 5)


if __name__ == "__main__":
    absltest.main()
