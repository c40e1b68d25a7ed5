"""mh.nets against their dm-haiku originals, through mh.interop.from_haiku / to_haiku.

Each test builds the dm-haiku model, converts its params (and state) with
``from_haiku``, and compares outputs, state updates and gradients (atol
1e-5), eagerly and jitted, then converts back and checks the round trip is
exact. ``MAX_DIFF`` collects the largest differences seen (printed at the end of
``python tests/test_nets_haiku.py``, which also runs the slow tests).
"""

import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

import minihaiku as mh

KEY = jax.random.PRNGKey(0)
ATOL = 1e-5
MAX_DIFF: dict = {}


def randn(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def perturb(tree, scale=0.1):
    """Haiku's init plus noise, so zero-initialised weights (logits, offsets) matter."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return jax.tree_util.tree_unflatten(
        treedef, [x + scale * randn(i + 7, x.shape) for i, x in enumerate(leaves)])


def assert_close(test, name, kind, ours, theirs, atol=ATOL):
    a, b = jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)
    test.assertEqual(len(a), len(b))
    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(a, b, strict=True) if np.size(x)]
    diff = max(diffs, default=0.0)
    MAX_DIFF[(name, kind)] = max(diff, MAX_DIFF.get((name, kind), 0.0))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol, err_msg=f"{name} {kind}")


def assert_same(test, a, b):
    test.assertEqual(jax.tree_util.tree_structure(a), jax.tree_util.tree_structure(b))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def check_stateful(test, name, hk_fn, mh_fn, x, steps=2, atol=ATOL):
    """Training steps then eval: outputs, state, and parameter gradients, eager and jitted."""
    theirs, ours = hk.transform_with_state(hk_fn), mh.transform_with_state(mh_fn)
    hk_params, hk_state = theirs.init(KEY, x, True)
    hk_params = perturb(hk_params)
    net = jax.eval_shape(lambda: ours.init(0, x, True))
    params, state = mh.interop.from_haiku(hk_params, hk_state, net=net)
    assert_same(test, mh.interop.to_haiku(params, state, net=(hk_params, hk_state)),
                (hk_params, hk_state))
    for jit in (False, True):
        hk_apply = jax.jit(theirs.apply, static_argnums=4) if jit else theirs.apply
        apply = jax.jit(ours.apply, static_argnums=4) if jit else ours.apply
        s, hs = state, hk_state
        for step in range(steps):
            xi = x + 0.5 * step
            out, s = apply(params, s, None, xi, True)
            hk_out, hs = hk_apply(hk_params, hs, None, xi, True)
            assert_close(test, name, "values", out, hk_out, atol)
            assert_close(test, name, "state", mh.interop.to_haiku(s, net=hs), hs, atol)
        out, _ = apply(params, s, None, x, False)
        assert_close(test, name, "values", out, hk_apply(hk_params, hs, None, x, False)[0], atol)

    cots = [randn(50 + i, o.shape) for i, o in enumerate(jax.tree_util.tree_leaves(out))]

    def loss(apply, p, s, x):
        outs = jax.tree_util.tree_leaves(apply(p, s, None, x, True)[0])
        return sum(jnp.sum(o * c) for o, c in zip(outs, cots, strict=True))

    g, gx = jax.jit(jax.grad(functools.partial(loss, ours.apply), (0, 2)))(params, state, x)
    hk_g, hk_gx = jax.jit(jax.grad(functools.partial(loss, theirs.apply), (0, 2)))(
        hk_params, hk_state, x)
    assert_close(test, name, "grads", mh.interop.to_haiku(g, net=hk_g), hk_g, atol)
    assert_close(test, name, "grads", gx, hk_gx, atol)


def check_stateless(test, name, hk_fn, mh_fn, *args):
    theirs, ours = hk.transform(hk_fn), mh.transform(mh_fn)
    hk_params = perturb(theirs.init(KEY, *args))
    params = mh.interop.from_haiku(hk_params, net=jax.eval_shape(lambda: ours.init(0, *args)))
    assert_same(test, mh.interop.to_haiku(params, net=hk_params), hk_params)
    for jit in (False, True):
        apply = jax.jit(ours.apply) if jit else ours.apply
        hk_apply = jax.jit(theirs.apply) if jit else theirs.apply
        assert_close(test, name, "values", apply(params, None, *args),
                     hk_apply(hk_params, None, *args))
    out = ours.apply(params, None, *args)
    cots = [randn(50 + i, o.shape) for i, o in enumerate(jax.tree_util.tree_leaves(out))]

    def loss(apply, p, x):
        outs = jax.tree_util.tree_leaves(apply(p, None, x, *args[1:]))
        return sum(jnp.sum(o * c) for o, c in zip(outs, cots, strict=True))

    g, gx = jax.grad(functools.partial(loss, ours.apply), (0, 1))(params, args[0])
    hk_g, hk_gx = jax.grad(functools.partial(loss, theirs.apply), (0, 1))(hk_params, args[0])
    assert_close(test, name, "grads", mh.interop.to_haiku(g, net=hk_g), hk_g)
    assert_close(test, name, "grads", gx, hk_gx)


SMALL = {"blocks_per_group": (2, 1, 1, 2), "channels_per_group": (8, 8, 16, 16),
         "use_projection": (False, True, True, True)}


class ResNetTest(parameterized.TestCase):

    # In float32 the moving variances differ by up to ~2e-5 where a channel's
    # batch holds 2 values: dm-haiku's E[x²] - E[x]² cancels there (minihaiku
    # computes two-pass). So the ResNets are compared in float64.
    def test_small_resnet_v1_matches_haiku(self):
        self._small_resnet(False, False)

    @parameterized.parameters((False, True), (True, False), (True, True))
    @pytest.mark.slow
    def test_small_resnet_matches_haiku(self, resnet_v2, bottleneck):
        self._small_resnet(resnet_v2, bottleneck)

    def _small_resnet(self, resnet_v2, bottleneck):
        kw = dict(SMALL, num_classes=5, resnet_v2=resnet_v2, bottleneck=bottleneck)
        with jax.enable_x64(True):
            check_stateful(
                self, "ResNet (small, float64)",
                lambda x, t: hk.nets.ResNet(**kw, initial_conv_config={"output_channels": 8})(
                    x, t),
                lambda x, t: mh.nets.ResNet(**kw, initial_conv_channels=8)(x, t),
                randn(0, [2, 16, 16, 3]).astype(jnp.float64))

    @pytest.mark.slow
    def test_test_local_stats_matches_haiku(self):
        kw = dict(SMALL, num_classes=5, bottleneck=False)
        theirs = hk.transform_with_state(
            lambda x: hk.nets.ResNet(**kw, initial_conv_config={"output_channels": 8})(
                x, False, test_local_stats=True))
        ours = mh.transform_with_state(
            lambda x: mh.nets.ResNet(**kw, initial_conv_channels=8)(x, False, True))
        x = randn(0, [2, 16, 16, 3])
        train = hk.transform_with_state(
            lambda x: hk.nets.ResNet(**kw, initial_conv_config={"output_channels": 8})(x, True))
        hk_params, hk_state = train.init(KEY, x)
        hk_params = perturb(hk_params)
        params, state = mh.interop.from_haiku(
            hk_params, hk_state, net=jax.eval_shape(ours.init, 0, x))
        assert_close(self, "ResNet (small)", "values", ours.apply(params, state, None, x)[0],
                     theirs.apply(hk_params, hk_state, None, x)[0])

    @pytest.mark.slow
    def test_resnet18_matches_haiku(self):
        with jax.enable_x64(True):
            check_stateful(self, "ResNet18 (float64)", lambda x, t: hk.nets.ResNet18(10)(x, t),
                           lambda x, t: mh.nets.ResNet18(10)(x, t),
                           randn(0, [2, 32, 32, 3]).astype(jnp.float64), steps=1)


class MobileNetV1Test(parameterized.TestCase):

    def test_small_mobilenet_matches_haiku(self):
        self._small_mobilenet(True)

    @pytest.mark.slow
    def test_small_mobilenet_without_bn_matches_haiku(self):
        self._small_mobilenet(False)

    def _small_mobilenet(self, use_bn):
        kw = dict(strides=(1, 2, 1), channels=(8, 16, 16), num_classes=4, use_bn=use_bn)
        check_stateful(self, "MobileNetV1 (small)",
                       lambda x, t: hk.nets.MobileNetV1(**kw)(x, t),
                       lambda x, t: mh.nets.MobileNetV1(**kw)(x, t), randn(0, [2, 17, 17, 3]))


class VectorQuantizerTest(absltest.TestCase):

    def test_vector_quantizer_matches_haiku(self):
        check_stateless(
            self, "VectorQuantizer",
            lambda x: hk.nets.VectorQuantizer(4, 16, 0.25)(x, True),
            lambda x: mh.nets.VectorQuantizer(4, 16, 0.25)(x, True),
            randn(0, [2, 5, 4]))

    def test_vector_quantizer_ema_matches_haiku(self):
        def drop_indices(out):
            return {k: v for k, v in out.items() if k != "encoding_indices"}

        x = randn(0, [3, 6, 4])
        check_stateful(
            self, "VectorQuantizerEMA",
            lambda x, t: drop_indices(hk.nets.VectorQuantizerEMA(4, 8, 0.25, 0.9)(x, t)),
            lambda x, t: drop_indices(mh.nets.VectorQuantizerEMA(4, 8, 0.25, 0.9)(x, t)),
            x, steps=3)


class MLPTest(absltest.TestCase):

    def test_mlp_and_reverse_match_haiku(self):
        def hk_fn(x):
            mlp = hk.nets.MLP([6, 3], activate_final=True)
            y = mlp(x)
            return mlp.reverse()(y)

        def mh_fn(x):
            mlp = mh.nets.MLP([6, 3], activate_final=True)
            y = mlp(x)
            return mlp.reverse()(y)

        check_stateless(self, "MLP", hk_fn, mh_fn, randn(0, [2, 5]))


class BuildingBlocksTest(absltest.TestCase):

    def test_multi_head_attention_matches_haiku(self):
        hk_init = hk.initializers.VarianceScaling(1.0)
        w_init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
        check_stateless(
            self, "MultiHeadAttention",
            lambda x: hk.MultiHeadAttention(2, 3, w_init=hk_init, model_size=6)(x, x, x),
            lambda x: mh.nn.MultiHeadAttention(2, 3, w_init, model_size=6)(x, x, x),
            randn(0, [2, 4, 6]))

    def test_linear_conv_batchnorm_match_haiku(self):
        def hk_fn(x, t):
            x = hk.BatchNorm(True, True, 0.9)(hk.Conv2D(4, 3)(x), t)
            return hk.Linear(3)(hk.Conv2D(4, 1, with_bias=False)(x))

        def mh_fn(x, t):
            x = mh.nn.BatchNorm(0.9)(mh.nn.Conv2D(4, 3)(x), t)
            return mh.nn.Linear(3)(mh.nn.Conv2D(4, 1, with_bias=False)(x))

        check_stateful(self, "Linear/Conv2D/BatchNorm", hk_fn, mh_fn, randn(0, [2, 5, 5, 3]))


def tearDownModule():
    if __name__ == "__main__":  # Run as a script: report the largest differences.
        for (name, kind), diff in sorted(MAX_DIFF.items()):
            print(f"{name:32s} {kind:7s} {diff:.2e}")


if __name__ == "__main__":
    absltest.main()
