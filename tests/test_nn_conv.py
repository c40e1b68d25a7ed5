"""Convolutions: hand-written jax.lax references, dm-haiku with copied weights,
paths, jit, errors, lifted use, HLO, and a small convnet that learns."""

import collections
import re

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers import haiku_compare as ref

_CONV = "~/Conv2D_0/__call__/"


def _conv2d_ref(x, w, b, stride, padding, rate=(1, 1), groups=1):
    y = jax.lax.conv_general_dilated(
        x, w, stride, padding, rhs_dilation=rate,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
    return y + b


def _op_counts(text):
    pattern = re.compile(r"=\s*[^=]*?\s([a-z][a-z0-9\-_.]*)\(")
    return collections.Counter(m.group(1) for line in text.splitlines()
                               if (m := pattern.search(line)) and "ROOT" not in line[:4])


class ConvFormulaTest(parameterized.TestCase):

    @parameterized.parameters(
        dict(stride=1, padding="SAME", rate=1, groups=1),
        dict(stride=2, padding="VALID", rate=1, groups=1),
        dict(stride=1, padding=((1, 2), (0, 1)), rate=2, groups=1),
        dict(stride=(2, 1), padding="SAME", rate=1, groups=2),
    )
    def test_conv2d_matches_lax(self, stride, padding, rate, groups):
        x = ref.randn(0, [2, 9, 8, 4])
        f = mh.transform(lambda x: mh.nn.Conv2D(6, (3, 2), stride=stride, rate=rate,
                                                padding=padding,
                                                feature_group_count=groups)(x))
        params = ref.randomize(f.init(0, x))
        w, b = params[_CONV + "w"], params[_CONV + "b"]
        self.assertEqual(w.shape, (3, 2, 4 // groups, 6))
        pads = padding if isinstance(padding, str) else padding
        want = _conv2d_ref(x, w, b, (stride,) * 2 if isinstance(stride, int) else stride,
                           pads, (rate, rate), groups)
        ref.assert_close(f.apply(params, None, x), want)

    def test_callable_padding_gets_effective_kernel_size(self):
        seen = []

        def causal(k):
            seen.append(k)
            return (k - 1, 0)

        x = ref.randn(0, [1, 10, 2])
        f = mh.transform(lambda x: mh.nn.Conv1D(3, 3, rate=2, padding=causal)(x))
        params = ref.randomize(f.init(0, x))
        self.assertIn(5, seen)  # (3 - 1) * 2 + 1
        p = "~/Conv1D_0/__call__/"
        want = jax.lax.conv_general_dilated(
            x, params[p + "w"], (1,), ((4, 0),), rhs_dilation=(2,),
            dimension_numbers=("NWC", "WIO", "NWC")) + params[p + "b"]
        ref.assert_close(f.apply(params, None, x), want)

    def test_paths_shapes_and_default_init(self):
        x = jnp.ones([2, 16, 16, 8])
        params = mh.transform(lambda x: mh.nn.Conv2D(64, 5)(x)).init(0, x)
        self.assertEqual({k: v.shape for k, v in params.items()},
                         {_CONV + "w": (5, 5, 8, 64), _CONV + "b": (64,)})
        np.testing.assert_array_equal(params[_CONV + "b"], 0)
        # Truncated normal at +-2 sigma has std 0.88 sigma; sigma = 1/sqrt(fan_in).
        std = float(jnp.std(params[_CONV + "w"])) * np.sqrt(5 * 5 * 8)
        self.assertBetween(std, 0.8, 0.96)

    def test_channels_first_bias_shape_and_value(self):
        x = ref.randn(0, [2, 3, 7, 7])
        f = mh.transform(lambda x: mh.nn.Conv2D(4, 3, data_format="NCHW")(x))
        params = ref.randomize(f.init(0, x))
        self.assertEqual(params[_CONV + "b"].shape, (4, 1, 1))
        want = jnp.transpose(_conv2d_ref(jnp.transpose(x, (0, 2, 3, 1)), params[_CONV + "w"],
                                         params[_CONV + "b"][:, 0, 0], (1, 1), "SAME"),
                             (0, 3, 1, 2))
        ref.assert_close(f.apply(params, None, x), want)

    def test_unbatched_input(self):
        x = ref.randn(0, [6, 6, 3])
        f = mh.transform(lambda x: mh.nn.Conv2D(4, 3)(x))
        params = ref.randomize(f.init(0, x))
        ref.assert_close(f.apply(params, None, x), f.apply(params, None, x[None])[0])

    def test_jit_equals_eager_and_precision(self):
        x = ref.randn(0, [2, 8, 8, 3])
        f = mh.transform(lambda x: mh.nn.Conv2D(4, 3)(x, precision=jax.lax.Precision.HIGHEST))
        params = jax.jit(f.init)(0, x)
        ref.assert_close(params, f.init(0, x))
        ref.assert_close(jax.jit(f.apply)(params, None, x), f.apply(params, None, x))

    def test_module_called_twice_reuses_params(self):
        def net(x):
            conv = mh.nn.Conv2D(3, 3)
            return conv(conv(x))

        x = ref.randn(0, [1, 5, 5, 3])
        f = mh.transform(net)
        params = ref.randomize(f.init(0, x))
        self.assertLen(params, 2)
        w, b = params[_CONV + "w"], params[_CONV + "b"]
        want = _conv2d_ref(_conv2d_ref(x, w, b, (1, 1), "SAME"), w, b, (1, 1), "SAME")
        ref.assert_close(f.apply(params, None, x), want)

    def test_under_layer_stack(self):
        def net(x):
            return mh.lifted.layer_stack(3)(lambda x: jax.nn.relu(mh.nn.Conv2D(2, 3)(x)))(x)

        x = ref.randn(0, [2, 6, 6, 2])
        f = mh.transform(net)
        params = ref.randomize(f.init(0, x))
        (wk,) = [k for k in params if k.endswith("/w")]
        (bk,) = [k for k in params if k.endswith("/b")]
        self.assertEqual(params[wk].shape, (3, 3, 3, 2, 2))
        want = x
        for i in range(3):
            want = jax.nn.relu(_conv2d_ref(want, params[wk][i], params[bk][i], (1, 1), "SAME"))
        ref.assert_close(f.apply(params, None, x), want)

    def test_under_lifted_scan(self):
        def net(xs):
            conv = mh.nn.Conv1D(2, 2)
            return mh.lifted.scan(lambda c, x: (c, conv(x)), 0., xs)[1]

        xs = ref.randn(0, [4, 1, 5, 2])
        f = mh.transform(net)
        params = ref.randomize(f.init(0, xs))
        p = "~/Conv1D_0/__call__/"
        want = jnp.stack([jax.lax.conv_general_dilated(
            x, params[p + "w"], (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
            + params[p + "b"] for x in xs])
        ref.assert_close(f.apply(params, None, xs), want)

    def test_optimized_hlo_equals_hand_written(self):
        x = ref.randn(0, [8, 16, 16, 3])
        f = mh.without_apply_rng(mh.transform(lambda x: mh.nn.Conv2D(8, 3, stride=2)(x)))
        params = f.init(0, x)
        raw = jax.jit(lambda w, b, x: _conv2d_ref(x, w, b, (2, 2), "SAME"))
        mine = jax.jit(f.apply)
        hlo_raw = _op_counts(raw.lower(params[_CONV + "w"], params[_CONV + "b"], x)
                             .compile().as_text())
        hlo_mine = _op_counts(mine.lower(params, x).compile().as_text())
        self.assertIn("convolution", hlo_raw)
        self.assertEqual(hlo_mine, hlo_raw)


class ConvErrorsTest(parameterized.TestCase):

    def _init(self, make, x):
        return mh.transform(lambda x: make()(x)).init(0, x)

    def test_bad_rank_names_path(self):
        with self.assertRaisesRegex(mh.ModuleInputError, r"Conv2D_0.*\(5, 5\).*rank 3 or 4"):
            self._init(lambda: mh.nn.Conv2D(3, 3), jnp.ones([5, 5]))

    def test_groups_must_divide_channels(self):
        with self.assertRaisesRegex(mh.ModuleInputError, "feature_group_count=2.*3 input"):
            self._init(lambda: mh.nn.Conv2D(4, 3, feature_group_count=2), jnp.ones([1, 4, 4, 3]))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "divide output_channels=5"):
            self._init(lambda: mh.nn.Conv2D(5, 3, feature_group_count=2), jnp.ones([1, 4, 4, 4]))

    @parameterized.parameters("NHW", "NCHWC", "NWC", "nhwc", 3)
    def test_bad_data_format(self, fmt):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "data_format.*NHWC"):
            self._init(lambda: mh.nn.Conv2D(3, 3, data_format=fmt), jnp.ones([1, 4, 4, 3]))

    @parameterized.parameters(("FULL",), (((1, 2, 3),),), (((1, 1), (1, 1), (1, 1)),),
                              (((-1, 0),),))
    def test_bad_padding(self, padding):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "Conv2D_0.*padding"):
            self._init(lambda: mh.nn.Conv2D(3, 3, padding=padding), jnp.ones([1, 4, 4, 3]))

    @parameterized.parameters(dict(kernel_shape=0), dict(kernel_shape=(3, 3, 3)),
                              dict(kernel_shape=3, stride=0), dict(kernel_shape=2.0))
    def test_bad_sizes(self, **kw):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "Conv2D_0.*(kernel_shape|stride)"):
            self._init(lambda: mh.nn.Conv2D(3, **kw), jnp.ones([1, 4, 4, 3]))

    def test_bad_output_channels_and_mask(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "output_channels=0"):
            self._init(lambda: mh.nn.Conv2D(0, 3), jnp.ones([1, 4, 4, 3]))
        with self.assertRaisesRegex(mh.ModuleInputError, r"mask of shape \(3, 3\).*\(3, 3, 3, 2\)"):
            self._init(lambda: mh.nn.Conv2D(2, 3, mask=jnp.ones([3, 3])), jnp.ones([1, 4, 4, 3]))

    def test_transpose_output_shape_mismatch(self):
        with self.assertRaisesRegex(mh.ModuleInputError, "Conv2DTranspose_0.*output_shape"):
            self._init(lambda: mh.nn.Conv2DTranspose(2, 3, stride=2, output_shape=20),
                       jnp.ones([1, 4, 4, 3]))

    def test_depthwise_needs_batched_input(self):
        with self.assertRaisesRegex(mh.ModuleInputError, "DepthwiseConv2D_0.*rank 4"):
            self._init(lambda: mh.nn.DepthwiseConv2D(2, 3), jnp.ones([4, 4, 3]))


def _hk_conv(name, prefix):
    return lambda p: {name: ref.module_params(p, prefix)}


class ConvHaikuTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("1d_unbatched_causal", 1, dict(padding=hk.pad.causal, rate=2), [11, 3]),
        ("2d_pairs_groups", 2, dict(padding=((1, 0), (2, 1)), feature_group_count=2),
         [2, 7, 7, 4]),
        ("2d_nchw", 2, dict(data_format="NCHW", stride=2), [2, 4, 9, 8]),
    )
    def test_conv_nd(self, n, kw, shape):
        self._compare_conv(n, kw, shape)

    @parameterized.named_parameters(
        ("1d", 1, dict(stride=2), [2, 11, 3]),
        ("2d", 2, dict(kernel_shape=(3, 2), rate=(1, 2)), [2, 9, 8, 4]),
        ("2d_no_bias_mask", 2, dict(with_bias=False, mask=np.tril(np.ones([3, 3, 4, 6]))),
         [1, 5, 5, 4]),
        ("3d_valid", 3, dict(padding="VALID"), [1, 5, 6, 4, 4]),
        ("3d_ncdhw", 3, dict(data_format="NCDHW"), [1, 4, 5, 4, 3]),
    )
    @pytest.mark.slow
    def test_conv_nd_more_layouts(self, n, kw, shape):
        self._compare_conv(n, kw, shape)

    def _compare_conv(self, n, kw, shape):
        kw = dict(kw)
        kernel = kw.pop("kernel_shape", 3)
        cls = {1: "Conv1D", 2: "Conv2D", 3: "Conv3D"}[n]
        hk_name = {1: "conv1_d", 2: "conv2_d", 3: "conv3_d"}[n]
        hk_kw = dict(kw)
        if "data_format" not in hk_kw:
            hk_kw["data_format"] = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]
        ref.compare(lambda x: getattr(mh.nn, cls)(6, kernel, **kw)(x),
                    lambda x: getattr(hk, cls)(6, kernel, **hk_kw)(x),
                    _hk_conv(hk_name, f"~/{cls}_0/__call__/"), ref.randn(0, shape))

    @pytest.mark.slow
    def test_conv_nd_generic(self):
        ref.compare(lambda x: mh.nn.ConvND(2, 5, 3, stride=2)(x),
                    lambda x: hk.ConvND(2, 5, 3, stride=2)(x),
                    _hk_conv("conv_nd", "~/ConvND_0/__call__/"), ref.randn(0, [2, 7, 7, 3]))

    @parameterized.named_parameters(
        ("2d_output_shape", 2, dict(stride=2, output_shape=(9, 10)), [2, 5, 5, 3]),
        ("2d_nchw_unbatched", 2, dict(stride=(1, 2), data_format="NCHW"), [3, 5, 4]),
    )
    def test_conv_transpose(self, n, kw, shape):
        self._compare_transpose(n, kw, shape)

    @parameterized.named_parameters(
        ("1d", 1, dict(stride=2), [2, 6, 3]),
        ("2d_valid", 2, dict(stride=2, padding="VALID"), [2, 5, 5, 3]),
        ("2d_output_shape_valid", 2, dict(stride=2, output_shape=11, padding="VALID"),
         [1, 5, 5, 3]),
        ("2d_pairs", 2, dict(padding=((1, 2), (0, 1))), [2, 5, 5, 3]),
        ("3d", 3, dict(stride=2), [1, 3, 4, 3, 2]),
    )
    @pytest.mark.slow
    def test_conv_transpose_more_layouts(self, n, kw, shape):
        self._compare_transpose(n, kw, shape)

    def _compare_transpose(self, n, kw, shape):
        cls = {1: "Conv1DTranspose", 2: "Conv2DTranspose", 3: "Conv3DTranspose"}[n]
        hk_name = {1: "conv1_d_transpose", 2: "conv2_d_transpose", 3: "conv3_d_transpose"}[n]
        ref.compare(lambda x: getattr(mh.nn, cls)(4, 3, **kw)(x),
                    lambda x: getattr(hk, cls)(4, 3, **kw)(x),
                    _hk_conv(hk_name, f"~/{cls}_0/__call__/"), ref.randn(0, shape))

    def test_conv_transpose_default_init_fan_in(self):
        x = jnp.ones([1, 4, 4, 16])
        p = mh.transform(lambda x: mh.nn.Conv2DTranspose(32, 4)(x)).init(0, x)
        w = p["~/Conv2DTranspose_0/__call__/w"]
        self.assertEqual(w.shape, (4, 4, 32, 16))
        self.assertBetween(float(jnp.std(w)) * np.sqrt(4 * 4 * 16), 0.8, 0.96)

    def test_depthwise(self):
        self._compare_depthwise(dict(stride=2), [2, 9, 9, 3])

    @parameterized.named_parameters(
        ("nhwc", dict(), [2, 7, 7, 3]),
        ("valid", dict(padding="VALID"), [2, 9, 9, 3]),
        ("dilated", dict(rate=2), [1, 9, 9, 2]),
        ("nchw", dict(data_format="NCHW"), [2, 3, 6, 6]),
    )
    @pytest.mark.slow
    def test_depthwise_layouts(self, kw, shape):
        self._compare_depthwise(kw, shape)

    def _compare_depthwise(self, kw, shape):
        ref.compare(lambda x: mh.nn.DepthwiseConv2D(2, 3, **kw)(x),
                    lambda x: hk.DepthwiseConv2D(2, 3, **kw)(x),
                    _hk_conv("depthwise_conv2_d", "~/DepthwiseConv2D_0/__call__/"),
                    ref.randn(0, shape))


class ConvNetTrainingTest(absltest.TestCase):

    def test_small_convnet_loss_falls(self):
        def net(x):
            for _ in range(3):
                x = jax.nn.relu(mh.nn.Conv2D(8, 3)(x))
            x = mh.nn.max_pool(x, 2, 2, "VALID")
            return mh.nn.Linear(10)(mh.nn.Flatten()(x))

        f = mh.without_apply_rng(mh.transform(net))
        x = ref.randn(0, [16, 8, 8, 3])
        labels = jnp.arange(16) % 10
        params = f.init(0, x)
        opt = optax.adam(1e-2)
        opt_state = opt.init(params)

        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(f.apply(p, x), labels).mean()

        @jax.jit
        def step(p, s):
            loss, g = jax.value_and_grad(loss_fn)(p)
            updates, s = opt.update(g, s)
            return optax.apply_updates(p, updates), s, loss

        losses = []
        for _ in range(15):
            params, opt_state, loss = step(params, opt_state)
            losses.append(float(loss))
        self.assertLess(losses[-1], 0.5 * losses[0])


if __name__ == "__main__":
    absltest.main()
