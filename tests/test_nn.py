"""Tests of mh.nn's feed-forward layers against hand-written JAX formulas."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh

_KEY = jax.random.PRNGKey(0)


def _randn(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _randomize(params, seed=1):
    """The same tree with random values, so zero/one inits can't hide bugs."""
    return {k: _randn(seed + i, v.shape) for i, (k, v) in enumerate(params.items())}


class LinearTest(parameterized.TestCase):

    def test_paths_shapes_and_default_init(self):
        f = mh.transform(lambda x: mh.nn.Linear(256)(x))
        params = f.init(_KEY, jnp.ones([2, 256]))
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b"])
        w, b = params.values()
        self.assertEqual((w.shape, b.shape), ((256, 256), (256,)))
        np.testing.assert_array_equal(b, 0.0)
        stddev = 1 / np.sqrt(256)
        # Truncated at two (untruncated) standard deviations, as jax's initializer.
        self.assertLessEqual(float(jnp.max(jnp.abs(w))), 2 * stddev + 1e-6)
        self.assertBetween(float(jnp.std(w)), 0.8 * stddev, 0.95 * stddev)

    @parameterized.parameters((True,), (False,))
    def test_matches_formula(self, with_bias):
        f = mh.transform(lambda x: mh.nn.Linear(3, with_bias=with_bias)(x))
        x = _randn(0, [2, 4, 5])
        params = _randomize(f.init(_KEY, x))
        expected = x @ params["~/Linear_0/__call__/w"]
        if with_bias:
            expected = expected + params["~/Linear_0/__call__/b"]
        else:
            self.assertLen(params, 1)
        np.testing.assert_allclose(f.apply(params, None, x), expected, rtol=1e-6)

    def test_custom_initializers_and_numpy_input(self):
        f = mh.transform(lambda x: mh.nn.Linear(
            2, w_init=jax.nn.initializers.ones,
            b_init=jax.nn.initializers.constant(0.5))(x))
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        params = f.init(_KEY, x)
        np.testing.assert_allclose(f.apply(params, None, x), x.sum(1, keepdims=True) + 0.5
                                   + np.zeros([2, 2]))
        np.testing.assert_allclose(f.apply(params, None, x.tolist()), f.apply(params, None, x))

    def test_apply_is_just_matmul_and_add(self):
        # The eager hot path: Linear adds no JAX ops beyond x @ w + b.
        f = mh.transform(lambda x: mh.nn.Linear(4)(x))
        x = jnp.ones([2, 3])
        params = f.init(_KEY, x)
        ours = jax.make_jaxpr(lambda p, x: f.apply(p, None, x))(params, x)
        raw = jax.make_jaxpr(lambda w, b, x: x @ w + b)(*params.values(), x)
        self.assertEqual([e.primitive.name for e in ours.eqns],
                         [e.primitive.name for e in raw.eqns])

    def test_jit_init_is_bitwise_equal(self):
        f = mh.transform(lambda x: mh.nn.Linear(7)(x))
        x = jnp.ones([1, 5])
        eager, jitted = f.init(_KEY, x), jax.jit(f.init)(_KEY, x)
        for k in eager:
            np.testing.assert_array_equal(eager[k], jitted[k])

    def test_params_follow_input_dtype(self):
        f = mh.transform(lambda x: mh.nn.Linear(2)(x))
        params = f.init(_KEY, jnp.ones([1, 3], jnp.bfloat16))
        self.assertEqual({v.dtype for v in params.values()}, {jnp.dtype(jnp.bfloat16)})

    def test_scalar_input_is_an_error(self):
        f = mh.transform(lambda x: mh.nn.Linear(2)(x))
        with self.assertRaisesRegex(mh.MiniHaikuError, "Linear_0.*scalar"):
            f.init(_KEY, jnp.float32(1.0))

    def test_changed_input_size_is_an_error(self):
        f = mh.transform(lambda x: mh.nn.Linear(2)(x))
        params = f.init(_KEY, jnp.ones([1, 3]))
        with self.assertRaisesRegex(mh.MismatchError, r"Linear_0/__call__/w.*\(3, 2\)"):
            f.apply(params, None, jnp.ones([1, 4]))

    def test_b_init_without_bias_is_an_error(self):
        f = mh.transform(lambda x: mh.nn.Linear(2, with_bias=False,
                                                b_init=jax.nn.initializers.ones)(x))
        with self.assertRaisesRegex(mh.MiniHaikuError, "with_bias=False"):
            f.init(_KEY, jnp.ones([1, 3]))

    @parameterized.parameters((3.0,), (-1,), (0,), ("a",), (True,))
    def test_bad_output_size_is_an_error_at_construction(self, size):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "Linear_0.*output_size.*int >= 1"):
            mh.transform(lambda: mh.nn.Linear(size)).init(_KEY)

    def test_integer_input_is_an_error(self):
        f = mh.transform(lambda x: mh.nn.Linear(2)(x))
        with self.assertRaisesRegex(mh.ModuleInputError, "Linear_0.*int32.*astype"):
            f.init(_KEY, jnp.ones([2, 3], jnp.int32))

    def test_precision_is_passed_to_the_matmul(self):
        x = _randn(0, [4, 5])
        f = mh.transform(lambda x: mh.nn.Linear(3, precision=jax.lax.Precision.HIGHEST)(x))
        params = _randomize(f.init(_KEY, x))
        w, b = params["~/Linear_0/__call__/w"], params["~/Linear_0/__call__/b"]
        want = jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST) + b
        np.testing.assert_allclose(f.apply(params, None, x), want, rtol=1e-6)
        jaxpr = str(jax.make_jaxpr(lambda p, x: f.apply(p, None, x))(params, x))
        self.assertIn("HIGHEST", jaxpr)


class MLPTest(parameterized.TestCase):

    @parameterized.parameters((False,), (True,))
    def test_matches_formula(self, activate_final):
        f = mh.transform(lambda x: mh.nn.MLP([4, 3, 2], activation=jnp.tanh,
                                             activate_final=activate_final)(x))
        x = _randn(0, [5, 6])
        params = _randomize(f.init(_KEY, x))
        p = "~/MLP_0/__call__/Linear_{}/__call__/{}"
        self.assertEqual(list(params), [p.format(i, n) for i in range(3) for n in "wb"])
        h = x
        for i in range(3):
            h = h @ params[p.format(i, "w")] + params[p.format(i, "b")]
            if i < 2 or activate_final:
                h = jnp.tanh(h)
        np.testing.assert_allclose(f.apply(params, None, x), h, rtol=1e-5, atol=1e-6)

    def test_calling_twice_reuses_params(self):
        def f(x):
            mlp = mh.nn.MLP([3, 3])
            return mlp(mlp(x))
        t = mh.transform(f)
        x = _randn(0, [2, 3])
        params = t.init(_KEY, x)
        self.assertLen(params, 4)
        once = mh.transform(lambda x: mh.nn.MLP([3, 3])(x)).apply
        np.testing.assert_allclose(t.apply(params, None, x),
                                   once(params, None, once(params, None, x)), rtol=1e-6)

    def test_dropout(self):
        f = mh.transform(lambda x, rate, training: mh.nn.MLP([64, 64])(x, rate, training))
        x = _randn(0, [8, 16])
        params = f.init(_KEY, x, None, True)
        clean = f.apply(params, None, x, None, True)
        np.testing.assert_array_equal(f.apply(params, None, x, 0.5, False), clean)
        noisy = f.apply(params, 0, x, 0.5, True)
        self.assertFalse(np.allclose(noisy, clean))
        with self.assertRaises(mh.NoRngError):
            f.apply(params, None, x, 0.5, True)

    def test_empty_sizes_is_an_error(self):
        with self.assertRaisesRegex(mh.MiniHaikuError, "output_sizes"):
            mh.transform(lambda x: mh.nn.MLP([])(x)).init(_KEY, jnp.ones([1, 2]))

    def test_b_init_without_bias_is_an_error(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "MLP_0.*b_init.*with_bias=False"):
            mh.transform(lambda: mh.nn.MLP([2], with_bias=False,
                                           b_init=jax.nn.initializers.ones)).init(_KEY)

    def test_layers_are_the_linears_of_the_last_call(self):
        def f(x):
            mlp = mh.nn.MLP([4, 3])
            self.assertEqual(mlp.layers, ())
            y = mlp(x)
            self.assertEqual([type(m).__name__ for m in mlp.layers], ["Linear", "Linear"])
            self.assertEqual([m.module_path for m in mlp.layers],
                             ["~/MLP_0/__call__/Linear_0", "~/MLP_0/__call__/Linear_1"])
            self.assertEqual([m.output_size for m in mlp.layers], [4, 3])
            return y

        mh.transform(f).init(_KEY, jnp.ones([1, 2]))


class DropoutTest(parameterized.TestCase):

    def test_matches_formula(self):
        f = mh.transform(lambda x: mh.nn.dropout(0.25, x))
        x = _randn(0, [100, 10])
        key = next(mh.PRNGSequence(3))  # the first key apply(…, 3, …) draws
        keep = jax.random.bernoulli(key, 0.75, x.shape)
        expected = jnp.where(keep, x / 0.75, 0.0)
        np.testing.assert_allclose(f.apply({}, 3, x), expected, rtol=1e-6)
        self.assertBetween(float(keep.mean()), 0.7, 0.8)

    def test_identity_without_rate_or_training(self):
        x = _randn(0, [3, 4])
        for fn in (lambda x: mh.nn.dropout(0.0, x), lambda x: mh.nn.dropout(0.5, x, False)):
            # No key is drawn: rng=None works and x comes back untouched.
            self.assertIs(mh.transform(fn).apply({}, None, x), x)

    def test_keys_differ_between_calls(self):
        f = mh.transform(lambda x: (mh.nn.dropout(0.5, x), mh.nn.dropout(0.5, x)))
        a, b = f.apply({}, 0, jnp.ones([64]))
        self.assertFalse(np.array_equal(a, b))

    @parameterized.parameters((1.0,), (-0.1,))
    def test_bad_rate_is_an_error(self, rate):
        with self.assertRaisesRegex(mh.MiniHaikuError, r"\[0, 1\)"):
            mh.transform(lambda x: mh.nn.dropout(rate, x)).apply({}, 0, jnp.ones([2]))

    def test_traced_rate(self):
        f = mh.transform(lambda x, r: mh.nn.dropout(r, x))
        out = jax.jit(f.apply)({}, 0, jnp.ones([1000]), 0.5)
        self.assertBetween(float((out == 0).mean()), 0.4, 0.6)

    def test_broadcast_dims_share_the_mask(self):
        f = mh.transform(lambda x: mh.nn.dropout(0.5, x, broadcast_dims=(0,)))
        x = _randn(0, [8, 50])
        key = next(mh.PRNGSequence(4))
        keep = jax.random.bernoulli(key, 0.5, (1, 50))
        out = f.apply({}, 4, x)
        np.testing.assert_allclose(out, jnp.where(keep, x / 0.5, 0.0), rtol=1e-6)
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"broadcast_dims=\(2,\)"):
            mh.transform(lambda x: mh.nn.dropout(0.5, x, broadcast_dims=(2,))).apply({}, 0, x)

    def test_traced_is_training_is_a_clear_error(self):
        f = mh.transform(lambda x, t: mh.nn.dropout(.1, x, t))
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    "traced is_training.*static_argnums.*jnp.where"):
            jax.jit(f.apply)({}, 0, jnp.ones([3]), True)
        out = jax.jit(f.apply, static_argnums=3)({}, 0, jnp.ones([3]), False)
        np.testing.assert_array_equal(out, 1.0)


class LayerNormTest(parameterized.TestCase):

    @parameterized.parameters((-1,), ((1, 2),), (slice(1, None),), (2,))
    def test_matches_formula(self, axis):
        f = mh.transform(lambda x: mh.nn.LayerNorm(axis=axis, eps=1e-3)(x))
        x = _randn(0, [2, 3, 4]) * 3 + 1
        params = _randomize(f.init(_KEY, x))
        scale = params["~/LayerNorm_0/__call__/scale"]
        offset = params["~/LayerNorm_0/__call__/offset"]
        self.assertEqual(scale.shape, (4,))
        axes = (2,) if axis in (-1, 2) else (1, 2)
        mean = x.mean(axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axes, keepdims=True)
        expected = (x - mean) / jnp.sqrt(var + 1e-3) * scale + offset
        np.testing.assert_allclose(f.apply(params, None, x), expected, rtol=1e-5, atol=1e-5)

    def test_default_init_normalises(self):
        f = mh.transform(lambda x: mh.nn.LayerNorm()(x))
        x = _randn(0, [4, 16]) * 5 + 2
        out = f.apply(f.init(_KEY, x), None, x)
        np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(out.std(-1), 1.0, atol=1e-3)

    def test_without_params(self):
        f = mh.transform(lambda x: mh.nn.LayerNorm(create_scale=False, create_offset=False)(x))
        x = _randn(0, [4, 8])
        self.assertEqual(f.init(_KEY, x), {})
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        np.testing.assert_allclose(f.apply({}, None, x), (x - mean) / jnp.sqrt(var + 1e-5),
                                   rtol=1e-5, atol=1e-5)

    def test_bad_input_is_an_error(self):
        with self.assertRaisesRegex(mh.MiniHaikuError, "LayerNorm_0.*scalar"):
            mh.transform(lambda x: mh.nn.LayerNorm()(x)).init(None, jnp.float32(1))
        with self.assertRaisesRegex(mh.MiniHaikuError, "axis 3 is out of range.*rank 2"):
            mh.transform(lambda x: mh.nn.LayerNorm(axis=3)(x)).init(None, jnp.ones([2, 2]))


class BatchNormTest(absltest.TestCase):

    def _transformed(self, decay=0.9, eps=1e-3):
        return mh.transform_with_state(lambda x, t: mh.nn.BatchNorm(decay, eps)(x, t))

    def test_training_and_moving_statistics(self):
        f = self._transformed()
        xs = [_randn(i, [6, 3, 4]) * (i + 1) + i for i in range(3)]
        params, state = f.init(_KEY, xs[0], True)
        p = "~/BatchNorm_0/__call__/"
        m, v = (f"~/BatchNorm_0/__init__/{n}_ema_0/" for n in ("mean", "var"))
        self.assertEqual(sorted(state), sorted(e + n for e in (m, v) for n in (
            "counter", "hidden", "average")))
        self.assertEqual(int(state[m + "counter"]), 0)
        # dm-haiku's init state: the averages start from init's batch.
        np.testing.assert_allclose(state[m + "average"], xs[0].mean((0, 1)), rtol=1e-5)
        np.testing.assert_allclose(state[v + "average"], xs[0].var((0, 1)), rtol=1e-5)
        np.testing.assert_array_equal(state[m + "hidden"], jnp.zeros([4]))
        params = _randomize(params)
        scale, offset = params[p + "scale"], params[p + "offset"]
        self.assertEqual(scale.shape, (4,))
        hidden_m = hidden_v = jnp.zeros([4])
        for t, x in enumerate(xs, start=1):
            out, state = f.apply(params, state, None, x, True)
            mean, var = x.mean((0, 1)), x.var((0, 1))
            np.testing.assert_allclose(
                out, (x - mean) / jnp.sqrt(var + 1e-3) * scale + offset, rtol=1e-4, atol=1e-4)
            hidden_m = 0.9 * hidden_m + 0.1 * mean
            hidden_v = 0.9 * hidden_v + 0.1 * var
            self.assertEqual(int(state[m + "counter"]), t)
            self.assertEqual(int(state[v + "counter"]), t)
            np.testing.assert_allclose(state[m + "average"], hidden_m / (1 - 0.9 ** t),
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(state[v + "average"], hidden_v / (1 - 0.9 ** t),
                                       rtol=1e-4, atol=1e-4)
        # Evaluation uses the moving statistics and leaves the state alone.
        x = xs[0]
        out, new_state = f.apply(params, state, None, x, False)
        mm, mv = state[m + "average"], state[v + "average"]
        np.testing.assert_allclose(out, (x - mm) / jnp.sqrt(mv + 1e-3) * scale + offset,
                                   rtol=1e-5, atol=1e-5)
        for k in state:
            np.testing.assert_array_equal(new_state[k], state[k])

    def test_first_step_moving_mean_is_batch_mean(self):
        # Zero-debiasing: after one step the moving mean is the batch mean.
        f = self._transformed(decay=0.99)
        x = _randn(0, [32, 5]) + 3
        params, state = f.init(_KEY, x, True)
        _, state = f.apply(params, state, None, x, True)
        np.testing.assert_allclose(state["~/BatchNorm_0/__init__/mean_ema_0/average"],
                                   x.mean(0),
                                   rtol=1e-4)

    def test_eval_in_init_creates_all_state(self):
        f = self._transformed()
        x = jnp.ones([2, 3])
        _, state = f.init(_KEY, x, False)
        self.assertLen(state, 6)

    def test_jit(self):
        f = self._transformed()
        x = _randn(0, [8, 3])
        params, state = f.init(_KEY, x, True)
        out, s1 = jax.jit(lambda p, s, x: f.apply(p, s, None, x, True))(params, state, x)
        out2, s2 = f.apply(params, state, None, x, True)
        np.testing.assert_allclose(out, out2, rtol=1e-5, atol=1e-6)
        p = "~/BatchNorm_0/__init__/var_ema_0/average"
        np.testing.assert_allclose(s1[p], s2[p], rtol=1e-5)

    def test_errors(self):
        f = self._transformed()
        x = jnp.ones([4, 3])
        params, _ = f.init(_KEY, x, True)
        with self.assertRaisesRegex(mh.MissingStateError,
                                    "BatchNorm_0.*moving statistics in state.*init"):
            f.apply(params, {}, None, x, True)
        with self.assertRaisesRegex(mh.StateNotAllowedError, "BatchNorm.*transform_with_state"):
            mh.transform(lambda x: mh.nn.BatchNorm(0.9)(x, True)).init(_KEY, x)
        with self.assertRaisesRegex(mh.MiniHaikuError, r"BatchNorm_0.*shape \(3,\)"):
            f.init(_KEY, jnp.ones([3]), True)
        with self.assertRaisesRegex(mh.MiniHaikuError, "is_training must be a Python bool"):
            jax.jit(f.init)(_KEY, x, True)
        with self.assertRaisesRegex(mh.MiniHaikuError, "decay_rate"):
            mh.transform_with_state(lambda x: mh.nn.BatchNorm(1.0)(x, True)).init(_KEY, x)


class EmbedTest(absltest.TestCase):

    def test_concrete_ids_closed_over_by_jit_and_numpy_params(self):
        # Concrete ids inside a jitted function are checked on the host, and
        # numpy params (as mh.io.load returns them) take traced ids.
        t = mh.transform(lambda ids: mh.nn.Embed(10, 4)(ids))
        ids = jnp.array([1, 9, 0])
        params = t.init(_KEY, ids)
        table = np.asarray(params["~/Embed_0/embeddings/embeddings"])
        out = jax.jit(lambda p: t.apply(p, None, ids))(params)
        np.testing.assert_array_equal(out, table[[1, 9, 0]])
        numpy_params = {k: np.asarray(v) for k, v in params.items()}
        out = jax.jit(lambda i: t.apply(numpy_params, None, i))(ids)
        np.testing.assert_array_equal(out, table[[1, 9, 0]])

    def test_lookup_and_attend_share_one_param(self):
        def f(ids):
            embed = mh.nn.Embed(10, 4)
            h = embed(ids)
            return h, embed.attend(h)
        t = mh.transform(f)
        ids = jnp.array([[1, 2, 3], [9, 0, 0]])
        params = t.init(_KEY, ids)
        self.assertEqual(list(params), ["~/Embed_0/embeddings/embeddings"])
        table = params["~/Embed_0/embeddings/embeddings"]
        self.assertEqual(table.shape, (10, 4))
        h, logits = t.apply(params, None, ids)
        np.testing.assert_array_equal(h, np.asarray(table)[np.asarray(ids)])
        np.testing.assert_allclose(logits, np.asarray(h) @ np.asarray(table).T, rtol=1e-5)

    def test_default_init_is_truncated_normal(self):
        params = mh.transform(lambda i: mh.nn.Embed(500, 20)(i)).init(_KEY, jnp.zeros([1], int))
        table = params["~/Embed_0/embeddings/embeddings"]
        self.assertLessEqual(float(jnp.max(jnp.abs(table))), 2.0)
        self.assertBetween(float(table.std()), 0.8, 0.95)

    def test_errors(self):
        f = mh.transform(lambda i: mh.nn.Embed(10, 4)(i))
        with self.assertRaisesRegex(mh.MiniHaikuError, "Embed_0.*float32.*integers"):
            f.init(_KEY, jnp.ones([2]))
        g = mh.transform(lambda x: mh.nn.Embed(10, 4).attend(x))
        with self.assertRaisesRegex(mh.MiniHaikuError, r"attend.*\(2, 5\).*\[\.\.\., 4\]"):
            g.init(_KEY, jnp.ones([2, 5]))

    def test_ids_out_of_range(self):
        f = mh.transform(lambda i: mh.nn.Embed(10, 4)(i))
        params = f.init(_KEY, jnp.zeros([1], int))
        for bad in ([3, 10], [-1, 2]):
            with self.assertRaisesRegex(mh.ModuleInputError, r"Embed_0.*vocab_size=10.*\[0, 10\)"):
                f.apply(params, None, jnp.array(bad))
        # Under jit ids are not known: JAX's gather clamps (documented).
        table = params["~/Embed_0/embeddings/embeddings"]
        out = jax.jit(f.apply)(params, None, jnp.array([10, 25, -1]))
        np.testing.assert_array_equal(out, table[jnp.array([9, 9, 9])])


if __name__ == "__main__":
    absltest.main()
