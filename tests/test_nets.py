"""mh.nets: VisionTransformer against hand-written jnp, scan_layers equal to unrolled,
configs and their errors, mh.interop's path mapping and errors."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest

import minihaiku as mh

KEY = jax.random.PRNGKey(0)


def randn(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def randomize(tree, scale=0.3):
    return {k: (v + scale * randn(i, v.shape) if jnp.issubdtype(v.dtype, jnp.floating) else v)
            for i, (k, v) in enumerate(tree.items())}


def restack(tree, pattern, replacement):
    """Stacks the entries whose path matches ``pattern`` (group 1: the layer index)."""
    groups: dict = {}
    out = {}
    for path, value in tree.items():
        m = re.search(pattern, path)
        if m is None:
            out[path] = value
        else:
            new = path[:m.start()] + replacement + path[m.end():]
            groups.setdefault(new, []).append((int(m.group(1)), value))
    for new, values in groups.items():
        out[new] = jnp.stack([v for _, v in sorted(values, key=lambda t: t[0])])
    return out


VIT = mh.nets.VisionTransformerConfig(patch_size=4, hidden_size=8, num_layers=3, num_heads=2,
                                      mlp_size=16, num_classes=5)


def layer_norm(x, p, prefix, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * p[prefix + "scale"] + p[prefix + "offset"]


def vit_by_hand(p, images, c):
    """The ViT forward in plain jnp, reading the params by path."""
    root = "~/VisionTransformer_0/__call__/"
    hi = jax.lax.Precision.HIGHEST
    x = jax.lax.conv_general_dilated(
        images, p[root + "patch_embedding_0/__call__/w"], (c.patch_size,) * 2, "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=hi)
    x = x + p[root + "patch_embedding_0/__call__/b"]
    n = x.shape[0]
    x = x.reshape(n, -1, c.hidden_size)
    cls = jnp.broadcast_to(p[root + "cls_token"], (n, 1, c.hidden_size))
    x = jnp.concatenate([cls, x], 1) + p[root + "position_embeddings"]
    heads, k = c.num_heads, c.hidden_size // c.num_heads
    for i in range(c.num_layers):
        b = f"{root}EncoderBlock_{i}/__call__/"
        y = layer_norm(x, p, b + "LayerNorm_0/__call__/", c.eps)
        a = b + "MultiHeadAttention_0/__call__/"

        def proj(name, y=y, a=a):
            z = jnp.dot(y, p[f"{a}{name}_0/__call__/w"], precision=hi)
            return (z + p[f"{a}{name}_0/__call__/b"]).reshape(n, -1, heads, k)

        q, kk, v = proj("query"), proj("key"), proj("value")
        w = jax.nn.softmax(jnp.einsum("nthk,nshk->nhts", q, kk, precision=hi) / np.sqrt(k))
        o = jnp.einsum("nhts,nshk->nthk", w, v, precision=hi).reshape(n, -1, c.hidden_size)
        x = x + jnp.dot(o, p[a + "linear_0/__call__/w"], precision=hi) + p[
            a + "linear_0/__call__/b"]
        y = layer_norm(x, p, b + "LayerNorm_1/__call__/", c.eps)
        y = jnp.dot(y, p[b + "Linear_0/__call__/w"], precision=hi) + p[b + "Linear_0/__call__/b"]
        y = jax.nn.gelu(y, approximate=False)
        x = x + jnp.dot(y, p[b + "Linear_1/__call__/w"], precision=hi) + p[
            b + "Linear_1/__call__/b"]
    x = layer_norm(x, p, root + "LayerNorm_0/__call__/", c.eps)
    return jnp.dot(x[:, 0], p[root + "head_0/__call__/w"], precision=hi) + p[
        root + "head_0/__call__/b"]


class VisionTransformerTest(absltest.TestCase):

    def test_matches_hand_written_jnp_and_scan_equals_unrolled(self):
        x = randn(0, [2, 8, 8, 3])
        f = mh.transform(lambda x: mh.nets.VisionTransformer(VIT)(x))
        params = randomize(f.init(KEY, x))
        self.assertEqual(params["~/VisionTransformer_0/__call__/position_embeddings"].shape,
                         (1, 5, 8))
        with jax.default_matmul_precision("highest"):
            out = f.apply(params, None, x)
            want = vit_by_hand(params, x, VIT)
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(jax.jit(f.apply)(params, None, x), want,
                                       rtol=1e-5, atol=1e-5)
            scan_config = dataclasses.replace(VIT, scan_layers=True)
            scanned = mh.transform(lambda x: mh.nets.VisionTransformer(scan_config)(x))
            stacked = restack(params, r"EncoderBlock_(\d+)", "EncoderBlock_0")
            shapes = jax.eval_shape(scanned.init, 0, x)
            self.assertEqual({k: v.shape for k, v in stacked.items()},
                             {k: v.shape for k, v in shapes.items()})
            np.testing.assert_allclose(scanned.apply(stacked, None, x), want,
                                       rtol=1e-5, atol=1e-5)

    def test_config_errors(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "num_heads=3 must divide"):
            mh.nets.VisionTransformerConfig(4, 8, 1, 3, 16, 5)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "patch_size=0"):
            mh.nets.VisionTransformerConfig(0, 8, 1, 2, 16, 5)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "either the config alone"):
            mh.transform(lambda x: mh.nets.VisionTransformer(VIT, scan_layers=True)(x)).init(
                0, jnp.ones([1, 8, 8, 3]))


SMALL = dict(blocks_per_group=(3, 1, 1, 2), num_classes=4, channels_per_group=(8, 8, 16, 16),
             use_projection=(False, True, True, True), initial_conv_channels=8)


class ResNetTest(absltest.TestCase):

    def test_scan_layers_equals_unrolled(self):
        self._scan_equals_unrolled(False)

    @pytest.mark.slow
    def test_scan_layers_equals_unrolled_v2(self):
        self._scan_equals_unrolled(True)

    def _scan_equals_unrolled(self, v2):
        x = randn(0, [2, 16, 16, 3])
        for kw in [dict(SMALL, bottleneck=False, resnet_v2=v2)]:
            f = mh.transform_with_state(lambda x, t, kw=kw: mh.nets.ResNet(**kw)(x, t))
            g = mh.transform_with_state(
                lambda x, t, kw=kw: mh.nets.ResNet(**kw, scan_layers=True)(x, t))
            params, state = f.init(KEY, x, True)
            params = randomize(params)
            pattern = r"__init__/block_([1-9]\d*)_0/"
            new = "__call__/stacked_blocks_0/"
            s_params, s_state = restack(params, pattern, new), restack(state, pattern, new)
            shapes = jax.eval_shape(lambda g=g: g.init(0, x, True))
            self.assertEqual({k: v.shape for k, v in s_params.items()},
                             {k: v.shape for k, v in shapes[0].items()})
            self.assertEqual(set(s_state), set(shapes[1]))
            for t in (True, False):
                out, new_state = f.apply(params, state, None, x, t)
                s_out, s_new = jax.jit(g.apply, static_argnums=4)(s_params, s_state, None, x, t)
                np.testing.assert_allclose(s_out, out, rtol=1e-5, atol=1e-5)
                want = restack(new_state, pattern, new)
                for k in want:
                    np.testing.assert_allclose(s_new[k], want[k], rtol=1e-5, atol=1e-5)

    def test_depths_and_config_errors(self):
        config = mh.nets.ResNetConfig.of_depth(50, 10)
        self.assertEqual(config.blocks_per_group, (3, 4, 6, 3))
        self.assertTrue(config.bottleneck)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "depth=19"):
            mh.nets.ResNetConfig.of_depth(19, 10)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "strides=.*4 entries"):
            mh.nets.ResNetConfig((1, 1, 1, 1), 10, strides=(1, 2))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "ResNet18 takes num_classes"):
            mh.transform_with_state(lambda x: mh.nets.ResNet18(config)(x, True)).init(
                0, jnp.ones([1, 8, 8, 3]))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "ResNet34.*blocks_per_group"):
            mh.transform_with_state(
                lambda x: mh.nets.ResNet34(10, blocks_per_group=(1,) * 4)(x, True)).init(
                    0, jnp.ones([1, 8, 8, 3]))


class MLPTest(absltest.TestCase):

    def test_reverse_shapes_names_and_error(self):
        def f(x):
            mlp = mh.nets.MLP([6, 3])
            return mlp.reverse()(mlp(x))

        def g(x):
            mlp = mh.nets.MLP(mh.nets.MLPConfig((6, 3)))
            y = mlp(x)
            return mlp.reverse(activate_final=True)(y)

        with self.assertRaisesRegex(mh.ModuleInputError, "cannot be reversed before"):
            mh.transform(f).init(0, jnp.ones([2, 5]))
        params = mh.transform(g).init(0, jnp.ones([2, 5]))
        rev = "~/MLP_0/reverse/MLP_reversed_0/__init__/"
        self.assertEqual(params[rev + "linear_0_0/__call__/w"].shape, (3, 6))
        self.assertEqual(params[rev + "linear_1_0/__call__/w"].shape, (6, 5))
        out = mh.transform(g).apply(params, None, jnp.ones([2, 5]))
        self.assertTrue(np.all(np.asarray(out) >= 0))    # activate_final=True: relu
        with self.assertRaisesRegex(mh.InvalidArgumentError, "output_sizes"):
            mh.nets.MLPConfig(())


class InteropTest(absltest.TestCase):

    def test_haiku_names(self):
        name = mh.interop.haiku_name
        self.assertEqual(name("~/Linear_0/__call__/w"), ("linear", "w"))
        self.assertEqual(name("~/ResNet18_0/__init__/block_group_2_0/__init__/block_1_0/"
                              "__init__/conv_0_0/__call__/w"),
                         ("res_net18/~/block_group_2/~/block_1/~/conv_0", "w"))
        self.assertEqual(name("~/MobileNetV1_0/__call__/MobileNetV1Block_3/__call__/"
                              "BatchNorm_1/__init__/mean_ema_0/hidden"),
                         ("mobile_net_v1/mobile_net_v1_block_3/batch_norm_1/~/mean_ema",
                          "hidden"))
        self.assertEqual(name("~/MLP_0/reverse/MLP_reversed_0/__init__/linear_1_0/__call__/b"),
                         ("mlp/~reverse/mlp_reversed/~/linear_1", "b"))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "'~/block/w' is not a module"):
            name("~/block/w")

    def test_errors_name_missing_extra_and_shapes(self):
        f = mh.transform(lambda x: mh.nets.MLP([3, 2])(x))
        net = jax.eval_shape(f.init, 0, jnp.ones([1, 4]))
        good = mh.interop.to_haiku(f.init(0, jnp.ones([1, 4])))
        self.assertEqual(list(good), ["mlp/~/linear_0", "mlp/~/linear_1"])
        bad = {**good, "mlp/~/linear_2": {"w": jnp.ones([2, 2])}}
        del bad["mlp/~/linear_0"]["b"]
        with self.assertRaisesRegex(mh.MismatchError, r"missing in hk_params \(1\): "
                                    r"'mlp/~/linear_0' 'b'.*not use \(1\): 'mlp/~/linear_2'"):
            mh.interop.from_haiku(bad, net=net)
        wrong = dict(good, **{"mlp/~/linear_1": {"w": jnp.ones([3, 5]), "b": jnp.ones([2])}})
        with self.assertRaisesRegex(mh.MismatchError, r"linear_1'\]\['w'\] has shape \(3, 5\)"
                                    r".*needs \(3, 2\)"):
            mh.interop.from_haiku(wrong, net=net)
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"\(params, state\) pair"):
            mh.interop.from_haiku(good, {}, net=net)
        with self.assertRaisesRegex(mh.MismatchError, "net needs entries missing in params"):
            mh.interop.to_haiku({}, net=good)


if __name__ == "__main__":
    absltest.main()
