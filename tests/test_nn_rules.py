"""What every mh.nn module shares: the error rule, default initializers, derived convs."""

import inspect

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh

KEY = jax.random.PRNGKey(0)

# A constructor argument wrong on its own: InvalidArgumentError naming the path.
_BAD_ARGUMENTS = [
    ("Linear", lambda: mh.nn.Linear(0), "Linear_0.*output_size=0"),
    ("Linear_bias", lambda: mh.nn.Linear(2, with_bias=False, b_init=jnp.zeros), "b_init"),
    ("MLP", lambda: mh.nn.MLP([]), "MLP_0.*output_sizes"),
    ("Conv2D", lambda: mh.nn.Conv2D(0, 3), "Conv2D_0.*output_channels=0"),
    ("ConvND", lambda: mh.nn.ConvND(0, 4, 3), "ConvND_0.*num_spatial_dims=0"),
    ("Conv1D_padding", lambda: mh.nn.Conv1D(4, 3, padding="same-ish"), "Conv1D_0.*padding"),
    ("Conv3DTranspose", lambda: mh.nn.Conv3DTranspose(4, 0), "Conv3DTranspose_0.*kernel_shape"),
    ("DepthwiseConv2D", lambda: mh.nn.DepthwiseConv2D(0, 3), "channel_multiplier=0"),
    ("Embed", lambda: mh.nn.Embed(0, 4), "Embed_0.*vocab_size=0"),
    ("Embed_dim", lambda: mh.nn.Embed(10, "4"), "Embed_0.*embed_dim='4'"),
    ("GroupNorm", lambda: mh.nn.GroupNorm(0), "GroupNorm_0.*groups=0"),
    ("Reshape", lambda: mh.nn.Reshape((2, -1), preserve_dims=0), "Reshape_0.*preserve_dims"),
    ("Sequential", lambda: mh.nn.Sequential([mh.nn.Linear(2), 3]), "Sequential_0.*layer 1"),
    ("MaxPool", lambda: mh.nn.MaxPool(2, 2, "same"), "MaxPool_0.*padding"),
    ("MHA", lambda: mh.nn.MultiHeadAttention(4, 2, jnp.zeros, num_kv_heads=3),
     "MultiHeadAttention_0.*num_kv_heads=3"),
]


class ErrorRuleTest(parameterized.TestCase):

    @parameterized.named_parameters(*_BAD_ARGUMENTS)
    def test_bad_constructor_argument_is_an_invalid_argument_error(self, build, msg):
        with self.assertRaisesRegex(mh.InvalidArgumentError, msg + ".*Fix"):
            mh.transform(build).init(KEY)

    @parameterized.named_parameters(
        ("Linear", lambda: mh.nn.Linear(2), (2, 3)),
        ("Conv1D", lambda: mh.nn.Conv1D(2, 3), (1, 5, 3)),
        ("Conv2D", lambda: mh.nn.Conv2D(2, 3), (1, 5, 5, 3)),
        ("Conv3D", lambda: mh.nn.Conv3D(2, 3), (1, 4, 4, 4, 3)),
        ("ConvND", lambda: mh.nn.ConvND(2, 2, 3), (1, 5, 5, 3)),
        ("Conv1DTranspose", lambda: mh.nn.Conv1DTranspose(2, 3), (1, 5, 3)),
        ("Conv2DTranspose", lambda: mh.nn.Conv2DTranspose(2, 3), (1, 5, 5, 3)),
        ("Conv3DTranspose", lambda: mh.nn.Conv3DTranspose(2, 3), (1, 4, 4, 4, 3)),
        ("DepthwiseConv2D", lambda: mh.nn.DepthwiseConv2D(2, 3), (1, 5, 5, 3)),
    )
    def test_integer_input_is_a_module_input_error(self, build, shape):
        f = mh.transform(lambda x: build()(x))
        with self.assertRaisesRegex(mh.ModuleInputError,
                                    r"_0' got an input of dtype int32.*floating.*astype"):
            f.init(KEY, jnp.ones(shape, jnp.int32))

    def test_batch_norm_in_haiku_order_names_both_signatures(self):
        for args in [(True, True, 0.9), (True, True), (False, True, 0.9, 1e-3)]:
            with self.assertRaisesRegex(
                    mh.InvalidArgumentError,
                    r"dm-haiku's signature BatchNorm\(create_scale, create_offset, decay_rate.*"
                    r"here it is BatchNorm\(decay_rate, eps=1e-5, \*, create_scale.*Fix"):
                mh.transform_with_state(lambda a=args: mh.nn.BatchNorm(*a)).init(KEY)
        # Ours, positionally and by keyword, still builds.
        f = mh.transform_with_state(
            lambda x: mh.nn.BatchNorm(0.9, 1e-3, create_scale=False)(x, True))
        _, state = f.init(KEY, jnp.ones([2, 3]))
        self.assertIn("~/BatchNorm_0/__init__/mean_ema_0/average", state)


class DefaultsTest(absltest.TestCase):

    def test_layers_share_one_fan_in_default(self):
        inits = []

        def f():
            inits.extend([mh.nn.Linear(2).w_init, mh.nn.ConvND(2, 2, 3).w_init,
                          mh.nn.Conv1D(2, 3).w_init, mh.nn.DepthwiseConv2D(2, 3).w_init])
        mh.transform(f).init(KEY)
        self.assertTrue(all(i is inits[0] for i in inits), inits)

    def test_fan_in_default_has_haiku_stddev(self):
        # fan_in = 3 * 3 * 8 = 72 for a [3, 3, 8, 512] kernel, truncated at 2 stddev.
        f = mh.transform(lambda x: mh.nn.Conv2D(512, 3)(x))
        w = f.init(KEY, jnp.ones([1, 4, 4, 8]))["~/Conv2D_0/__call__/w"]
        stddev = 1 / np.sqrt(72)
        self.assertLessEqual(float(jnp.max(jnp.abs(w))), 2 * stddev + 1e-6)
        # A truncated normal's stddev is 0.8796 of its scale.
        self.assertAlmostEqual(float(jnp.std(w)), 0.8796 * stddev, delta=0.02 * stddev)

    def test_norms_declare_float32_statistics(self):
        for cls in (mh.nn.BatchNorm, mh.nn.LayerNorm, mh.nn.GroupNorm, mh.nn.RMSNorm,
                    mh.nn.InstanceNorm):
            self.assertIs(cls.keeps_float32, True, cls)
        for cls in (mh.nn.Linear, mh.nn.Conv2D, mh.nn.MultiHeadAttention, mh.nn.Embed):
            self.assertFalse(getattr(cls, "keeps_float32", False), cls)


class DerivedConvTest(parameterized.TestCase):

    @parameterized.parameters(
        (mh.nn.Conv1D, mh.nn.ConvND, 1), (mh.nn.Conv2D, mh.nn.ConvND, 2),
        (mh.nn.Conv3D, mh.nn.ConvND, 3), (mh.nn.Conv1DTranspose, mh.nn.ConvNDTranspose, 1),
        (mh.nn.Conv2DTranspose, mh.nn.ConvNDTranspose, 2),
        (mh.nn.Conv3DTranspose, mh.nn.ConvNDTranspose, 3))
    def test_fixed_dims_conv_is_the_nd_conv(self, cls, base, n):
        nd = inspect.signature(base).parameters
        self.assertEqual(list(inspect.signature(cls).parameters.values()),
                         [p for name, p in nd.items() if name != "num_spatial_dims"])
        self.assertIn(f"num_spatial_dims, which is {n}", cls.__init__.__doc__)
        self.assertTrue(issubclass(cls, base))
        x = jax.random.normal(KEY, (2,) + (5,) * n + (3,))
        ours = mh.transform(lambda x: cls(4, 3, stride=2, name="c")(x))
        theirs = mh.transform(lambda x: base(n, 4, 3, stride=2, name="c")(x))
        params = ours.init(KEY, x)
        self.assertEqual(params.keys(), theirs.init(KEY, x).keys())
        self.assertEqual(sorted(params), ["~/c_0/__call__/b", "~/c_0/__call__/w"])
        np.testing.assert_array_equal(ours.apply(params, None, x),
                                      theirs.apply(params, None, x))

    def test_num_spatial_dims_cannot_be_given_again(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    "Conv2D fixes num_spatial_dims=2.*got num_spatial_dims=3"):
            mh.transform(lambda: mh.nn.Conv2D(4, 3, num_spatial_dims=3)).init(KEY)


class EmbedIdsTest(absltest.TestCase):

    def test_negative_ids_are_refused_eagerly_saying_what_jit_does(self):
        f = mh.transform(lambda i: mh.nn.Embed(10, 4)(i))
        params = f.init(KEY, jnp.zeros([1], int))
        with self.assertRaisesRegex(mh.ModuleInputError,
                                    r"Embed_0.*in \[-1, 2\].*negative id -k reads row "
                                    r"vocab_size - k.*clamped"):
            f.apply(params, None, jnp.array([-1, 2]))

    def test_under_jit_ids_wrap_then_clamp_as_haiku(self):
        ids = jnp.array([-1, -10, -11, 10, 25, 3])
        f = mh.transform(lambda i: mh.nn.Embed(10, 4)(i))
        params = f.init(KEY, ids[-1:])
        table = params["~/Embed_0/embeddings/embeddings"]
        out = jax.jit(f.apply)(params, None, ids)
        # -1 is the last row, -10 the first, -11 clamps to the first, >= 10 the last.
        np.testing.assert_array_equal(out, table[np.array([9, 0, 0, 9, 9, 3])])
        hk_f = hk.transform(lambda i: hk.Embed(10, 4)(i))
        hk_out = jax.jit(hk_f.apply)({"embed": {"embeddings": table}}, None, ids)
        np.testing.assert_array_equal(out, hk_out)


if __name__ == "__main__":
    absltest.main()
