"""RMSNorm, GroupNorm, InstanceNorm and the LayerNorm/BatchNorm options, against
hand-written jnp and dm-haiku with copied weights."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers import assert_close
from helpers.haiku_compare import KEY, compare, randn, randomize


def _params_of(prefix, names):
    return lambda p: {prefix: {n: p[f"~/{_CLASS[prefix]}_0/__call__/{n}"] for n in names}}


_CLASS = {"rms_norm": "RMSNorm", "group_norm": "GroupNorm", "instance_norm": "InstanceNorm",
          "layer_norm": "LayerNorm"}


def _init_apply(fn, x):
    f = mh.transform(fn)
    params = randomize(f.init(KEY, x))
    return f, params


class RMSNormTest(parameterized.TestCase):

    @parameterized.parameters((-1, None), ((1, 2), None), ((1, 2), (1, 2)), (slice(1, None), 1))
    def test_matches_haiku_values_and_grads(self, axis, param_axis):
        x = randn(0, [2, 3, 4]) * 3 + 1
        compare(
            lambda x: mh.nn.RMSNorm(axis, 1e-3, param_axis=param_axis)(x),
            lambda x: hk.RMSNorm(axis, 1e-3, param_axis=param_axis)(x),
            _params_of("rms_norm", ["scale"]), x)

    def test_matches_handwritten_formula(self):
        x = randn(0, [2, 5, 6])
        f, params = _init_apply(lambda x: mh.nn.RMSNorm(-1, eps=1e-4)(x), x)
        scale = params["~/RMSNorm_0/__call__/scale"]
        want = x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-4) * scale
        assert_close(f.apply(params, None, x), want)

    def test_without_scale_has_no_params_and_matches_haiku(self):
        x = randn(0, [3, 4])
        f = mh.transform(lambda x: mh.nn.RMSNorm(-1, create_scale=False)(x))
        self.assertEqual(f.init(KEY, x), {})
        h = hk.transform(lambda x: hk.RMSNorm(-1, create_scale=False)(x))
        assert_close(f.apply({}, None, x), h.apply({}, None, x))

    def test_bad_axis_and_scalar_name_the_module(self):
        with self.assertRaisesRegex(mh.ModuleInputError, "RMSNorm_0.*axis 2.*rank 2"):
            mh.transform(lambda x: mh.nn.RMSNorm(2)(x)).init(None, jnp.ones([2, 2]))
        with self.assertRaisesRegex(mh.ModuleInputError, "RMSNorm_0.*scalar"):
            mh.transform(lambda x: mh.nn.RMSNorm()(x)).init(None, jnp.float32(1))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "RMSNorm_0.*scale_init"):
            mh.transform(lambda x: mh.nn.RMSNorm(
                create_scale=False, scale_init=jnp.ones)(x)).init(None, jnp.ones([2]))


class GroupNormTest(parameterized.TestCase):

    @parameterized.parameters(
        ("channels_last", [2, 4, 5, 6], 3, slice(1, None)),
        ("channels_first", [2, 6, 4, 5], 2, slice(1, None)),
        ("channels_last", [2, 4, 5, 6], 2, (1, 2)),   # spatial only, not within-group
        ("channels_first", [2, 6, 4], 6, 2))
    def test_matches_haiku_values_and_grads(self, data_format, shape, groups, axis):
        x = randn(0, shape) * 2 + 3
        compare(
            lambda x: mh.nn.GroupNorm(groups, axis, eps=1e-3, data_format=data_format)(x),
            lambda x: hk.GroupNorm(groups, axis, eps=1e-3, data_format=data_format)(x),
            _params_of("group_norm", ["scale", "offset"]), x)

    def test_matches_handwritten_formula(self):
        x = randn(0, [2, 3, 3, 8])
        f, params = _init_apply(lambda x: mh.nn.GroupNorm(4)(x), x)
        g = x.reshape(2, 3, 3, 4, 2)
        mean = g.mean((1, 2, 4), keepdims=True)
        var = ((g - mean) ** 2).mean((1, 2, 4), keepdims=True)
        want = ((g - mean) / jnp.sqrt(var + 1e-5)).reshape(x.shape)
        pre = "~/GroupNorm_0/__call__/"
        want = want * params[pre + "scale"] + params[pre + "offset"]
        assert_close(f.apply(params, None, x), want)

    def test_negative_axis_counts_from_the_input_end(self):
        # Haiku shifts negative axes as if they were non-negative (channels-first
        # -1 becomes the batch axis): we read them on the input, as LayerNorm does.
        x = randn(0, [2, 6, 4])
        for fmt in ("channels_first", "channels_last"):
            neg = mh.transform(lambda x, f=fmt: mh.nn.GroupNorm(2, -1, data_format=f)(x))
            pos = mh.transform(lambda x, f=fmt: mh.nn.GroupNorm(2, 2, data_format=f)(x))
            p = randomize(neg.init(KEY, x))
            assert_close(neg.apply(p, None, x), pos.apply(p, None, x))

    def test_init_shapes_and_paths(self):
        for fmt, x, shape in (("channels_last", jnp.ones([1, 3, 3, 4]), (4,)),
                              ("channels_first", jnp.ones([1, 4, 3, 3]), (4, 1, 1))):
            params = mh.transform(lambda x, fmt=fmt: mh.nn.GroupNorm(2, data_format=fmt)(x)).init(
                KEY, x)
            self.assertEqual({k: v.shape for k, v in params.items()},
                             {"~/GroupNorm_0/__call__/scale": shape,
                              "~/GroupNorm_0/__call__/offset": shape})

    def test_groups_not_dividing_channels_names_module_and_fix(self):
        with self.assertRaisesRegex(mh.ModuleInputError,
                                    r"GroupNorm_0.*groups=4 does not divide the 6 channels.*Fix"):
            mh.transform(lambda x: mh.nn.GroupNorm(4)(x)).init(None, jnp.ones([2, 6]))
        with self.assertRaisesRegex(mh.ModuleInputError, "GroupNorm_0.*batch axis"):
            mh.transform(lambda x: mh.nn.GroupNorm(1)(x)).init(None, jnp.ones([6]))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "GroupNorm_0.*groups=0"):
            mh.transform(lambda x: mh.nn.GroupNorm(0)(x)).init(None, jnp.ones([2, 6]))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "data_format='NHWC'"):
            mh.transform(lambda x: mh.nn.GroupNorm(2, data_format="NHWC")(x)).init(
                None, jnp.ones([2, 6]))


class InstanceNormTest(parameterized.TestCase):

    @parameterized.parameters(("channels_last", [2, 4, 5, 3]), ("channels_first", [2, 3, 4, 5]))
    def test_matches_haiku_values_and_grads(self, data_format, shape):
        x = randn(0, shape) * 2 + 1
        compare(
            lambda x: mh.nn.InstanceNorm(data_format=data_format)(x),
            lambda x: hk.InstanceNorm(True, True, data_format=data_format)(x),
            _params_of("instance_norm", ["scale", "offset"]), x)

    def test_equals_group_norm_with_one_group_per_channel(self):
        x = randn(0, [2, 4, 4, 3])
        f, params = _init_apply(lambda x: mh.nn.InstanceNorm()(x), x)
        g = mh.transform(lambda x: mh.nn.GroupNorm(3)(x))
        g_params = {k.replace("InstanceNorm", "GroupNorm"): v for k, v in params.items()}
        assert_close(f.apply(params, None, x), g.apply(g_params, None, x))


class LayerNormOptionsTest(parameterized.TestCase):

    @parameterized.parameters(((1, 2), (1,)), (-1, -1), ((2,), (1, 2)))
    def test_param_axis_matches_haiku(self, axis, param_axis):
        x = randn(0, [2, 3, 4]) * 2 + 1
        compare(
            lambda x: mh.nn.LayerNorm(axis, param_axis=param_axis)(x),
            lambda x: hk.LayerNorm(axis, True, True, param_axis=param_axis)(x),
            _params_of("layer_norm", ["scale", "offset"]), x)

    def test_use_fast_variance_matches_haiku(self):
        x = randn(0, [4, 6]) + 2
        compare(
            lambda x: mh.nn.LayerNorm(-1, True, True, 1e-3, use_fast_variance=True)(x),
            lambda x: hk.LayerNorm(-1, True, True, 1e-3, use_fast_variance=True)(x),
            _params_of("layer_norm", ["scale", "offset"]), x)

    def test_haiku_style_positional_call_works(self):
        x = randn(0, [3, 5])
        a = mh.transform(lambda x: mh.nn.LayerNorm(-1, False, True, 1e-2)(x))
        b = mh.transform(lambda x: mh.nn.LayerNorm(axis=-1, create_scale=False, eps=1e-2)(x))
        p = randomize(a.init(KEY, x))
        self.assertEqual(list(p), ["~/LayerNorm_0/__call__/offset"])
        assert_close(a.apply(p, None, x), b.apply(p, None, x))

    @parameterized.parameters(("foo",), (["foo"],), (1.5,), ([0, "a"],))
    def test_axis_that_is_not_an_axis_is_refused_with_the_fix(self, axis):
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"LayerNorm_0.*is not an axis.*Fix"):
            mh.transform(lambda x: mh.nn.LayerNorm(axis)(x)).init(None, jnp.ones([2, 3]))

    def test_eps_given_where_a_flag_goes_says_pass_eps(self):
        for make in (lambda: mh.nn.LayerNorm(-1, 1e-3),
                     lambda: mh.nn.GroupNorm(2, slice(1, None), 1e-3),
                     lambda: mh.nn.InstanceNorm(1e-3)):
            with self.assertRaisesRegex(mh.InvalidArgumentError, r"must be a bool.*eps=0.001"):
                mh.transform(lambda x, make=make: make()(x)).init(None, jnp.ones([2, 4]))

    def test_eps_is_the_last_positional_argument_everywhere(self):
        x = randn(0, [2, 4])
        pairs = [(lambda: mh.nn.LayerNorm(-1, True, True, 1e-2),
                  lambda: mh.nn.LayerNorm(eps=1e-2)),
                 (lambda: mh.nn.RMSNorm(-1, 1e-2), lambda: mh.nn.RMSNorm(eps=1e-2)),
                 (lambda: mh.nn.GroupNorm(2, slice(1, None), True, True, 1e-2),
                  lambda: mh.nn.GroupNorm(2, eps=1e-2)),
                 (lambda: mh.nn.InstanceNorm(True, True, 1e-2),
                  lambda: mh.nn.InstanceNorm(eps=1e-2))]
        for positional, keyword in pairs:
            f = mh.transform(lambda x, m=positional: m()(x))
            g = mh.transform(lambda x, m=keyword: m()(x))
            p = randomize(f.init(KEY, x))
            assert_close(f.apply(p, None, x), g.apply(p, None, x))
            with self.assertRaises(TypeError):  # everything after eps is keyword-only
                mh.transform(lambda x, m=positional: type(m())(*([None] * 6))(x)).init(KEY, x)


class BatchNormOptionsTest(parameterized.TestCase):

    def _bn(self, **kw):
        return mh.transform_with_state(lambda x, t: mh.nn.BatchNorm(0.8, 1e-3, **kw)(x, t))

    def test_channels_first_matches_haiku_over_steps_and_eval(self):
        ours = self._bn(data_format="channels_first")
        theirs = hk.transform_with_state(
            lambda x, t: hk.BatchNorm(True, True, 0.8, 1e-3, data_format="channels_first")(x, t))
        xs = [randn(i, [4, 3, 2, 2]) * (i + 1) + i for i in range(3)]
        params, state = ours.init(KEY, xs[0], True)
        params = randomize(params)
        pre = "~/BatchNorm_0/__call__/"   # params
        self.assertEqual(params[pre + "scale"].shape, (3,))
        ema = "~/BatchNorm_0/__init__/{}_ema_0/average"
        self.assertEqual(state[ema.format("mean")].shape, (3,))
        hk_params = {"batch_norm": {n: params[pre + n].reshape(1, 3, 1, 1)
                                    for n in ("scale", "offset")}}
        _, hk_state = theirs.init(KEY, xs[0], True)
        for x in xs:
            out, state = ours.apply(params, state, None, x, True)
            hk_out, hk_state = theirs.apply(hk_params, hk_state, None, x, True)
            assert_close(out, hk_out)
        assert_close(state[ema.format("var")], hk_state["batch_norm/~/var_ema"]["average"].ravel())
        out, _ = ours.apply(params, state, None, xs[0], False)
        assert_close(out, theirs.apply(hk_params, hk_state, None, xs[0], False)[0])

    def test_explicit_axis_keeps_the_other_axes_in_params_and_state(self):
        x = randn(0, [4, 3, 2]) + 1
        ours = self._bn(axis=(0,))
        params, state = ours.init(KEY, x, True)
        self.assertEqual(params["~/BatchNorm_0/__call__/scale"].shape, (3, 2))
        out, _ = ours.apply(params, state, None, x, True)
        want = (x - x.mean(0)) / jnp.sqrt(x.var(0) + 1e-3)
        assert_close(out, want)

    def test_large_mean_input_is_finite_and_exact(self):
        x = 1000 + jnp.array([[0.1], [0.2], [0.3], [0.4]])
        ours = self._bn()
        params, state = ours.init(KEY, x, True)
        out, state = ours.apply(params, state, None, x, True)
        xs = np.asarray(x, np.float64)
        want = (xs - xs.mean()) / np.sqrt(xs.var() + 1e-3)
        self.assertTrue(np.all(np.isfinite(out)))
        np.testing.assert_allclose(out, want, atol=1e-3)
        self.assertGreater(float(state["~/BatchNorm_0/__init__/var_ema_0/average"][0]), 0)

    def test_cross_replica_axis_under_vmap_uses_global_batch_statistics(self):
        ours = self._bn(cross_replica_axis="i")
        local = self._bn()
        x = randn(0, [4, 3, 5]) * 2 + 1     # 4 replicas of a local batch of 3
        params, state = local.init(KEY, x[0], True)
        params = randomize(params)
        out, new_state = jax.vmap(lambda x: ours.apply(params, state, None, x, True),
                                  axis_name="i")(x)
        want, want_state = local.apply(params, state, None, x.reshape(12, 5), True)
        assert_close(out.reshape(12, 5), want)
        for name in ("mean", "var"):
            p = f"~/BatchNorm_0/__init__/{name}_ema_0/average"
            assert_close(new_state[p], jnp.broadcast_to(want_state[p], (4, 5)))

    def test_cross_replica_axis_unbound_names_module_and_fix(self):
        with self.assertRaisesRegex(mh.ModuleInputError, "BatchNorm_0.*'i' is not bound.*Fix"):
            self._bn(cross_replica_axis="i").init(KEY, jnp.ones([2, 3]), True)

    def test_jit_equals_eager_for_every_norm(self):
        x = randn(0, [2, 4, 4, 6]) + 1
        for fn in (lambda x: mh.nn.RMSNorm()(x), lambda x: mh.nn.GroupNorm(3)(x),
                   lambda x: mh.nn.InstanceNorm(data_format="channels_first")(x),
                   lambda x: mh.nn.LayerNorm((1, 2), param_axis=-1, use_fast_variance=True)(x)):
            f = mh.transform(fn)
            p = randomize(f.init(KEY, x))
            assert_close(jax.jit(f.apply)(p, None, x), f.apply(p, None, x), atol=1e-6)
        bn = self._bn(data_format="channels_first")
        p, s = bn.init(KEY, x, True)
        eager = bn.apply(p, s, None, x, True)
        jitted = jax.jit(bn.apply, static_argnums=4)(p, s, None, x, True)
        assert_close(jitted, eager, atol=1e-6)

    def test_norms_under_layer_stack_get_per_layer_params(self):
        x = randn(0, [2, 8])
        f = mh.transform(lambda x: mh.lifted.layer_stack(3)(
            lambda x: mh.nn.RMSNorm()(mh.nn.GroupNorm(2)(x)))(x))
        params = f.init(KEY, x)
        self.assertEqual({k: v.shape for k, v in params.items()},
                         {"~/GroupNorm_0/__call__/scale": (3, 8),
                          "~/GroupNorm_0/__call__/offset": (3, 8),
                          "~/RMSNorm_0/__call__/scale": (3, 8)})
        self.assertEqual(f.apply(params, None, x).shape, (2, 8))


if __name__ == "__main__":
    absltest.main()
