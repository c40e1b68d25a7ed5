"""mh.export: a jax.export artefact that deserialises and runs to the same outputs."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

import minihaiku as mh

KEY = jax.random.PRNGKey(0)
_W_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _mlp(x):
    return mh.nn.MLP([32, 16, 4])(x)


def _convnet(x):
    for _ in range(2):
        x = jax.nn.relu(mh.nn.Conv2D(8, 3)(x))
    x = mh.nn.max_pool(x, 2, 2, "VALID")
    return mh.nn.Linear(10)(x.reshape(x.shape[0], -1))


def _transformer(x):
    def block(x):
        h = mh.nn.LayerNorm()(x)
        x = x + mh.nn.MultiHeadAttention(4, 8, _W_INIT)(h, h, h, is_causal=True)
        return x + mh.nn.MLP([64, 32], activation=jax.nn.gelu)(mh.nn.LayerNorm()(x))
    return mh.lifted.layer_stack(2)(block)(x)


class ExportTest(parameterized.TestCase):

    def test_mlp_round_trip_at_another_batch_size(self):
        self.check_round_trip(_mlp, (3, 8))

    @pytest.mark.slow
    def test_convnet_round_trip_at_another_batch_size(self):
        self.check_round_trip(_convnet, (2, 10, 10, 3))

    @pytest.mark.slow
    def test_transformer_round_trip_at_another_batch_size(self):
        self.check_round_trip(_transformer, (2, 12, 32))

    def check_round_trip(self, fn, shape):
        init, apply = mh.without_apply_rng(mh.transform(fn))
        x = jax.random.normal(KEY, shape)
        params = init(KEY, x)
        blob = mh.export(apply, params, x).serialize()
        restored = jax.export.deserialize(blob)
        x = jax.random.normal(jax.random.PRNGKey(1), (5,) + shape[1:])
        np.testing.assert_allclose(restored.call(x), jax.jit(apply)(params, x), atol=1e-6, rtol=0)

    def test_module_paths_in_locations_and_file_written(self):
        init, apply = mh.transform(_mlp)
        x = jnp.ones((3, 8))
        params = init(KEY, x)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "mlp.jax")
            exported = mh.export(apply, params, None, x, path=path)   # rng None: fixed
            with open(path, "rb") as f:
                restored = jax.export.deserialize(bytearray(f.read()))
        text = restored.mlir_module()
        for i in range(3):
            self.assertIn(f"MLP_0/__call__/Linear_{i}/__call__/dot_general", text)
        self.assertEqual(str(exported.in_avals[0].shape), "(batch, 8)")
        np.testing.assert_allclose(restored.call(x), apply(params, None, x), atol=1e-6)

    def test_exact_shapes_and_bad_batch_axis(self):
        init, apply = mh.without_apply_rng(mh.transform(_mlp))
        x = jnp.ones((3, 8))
        params = init(KEY, x)
        exported = mh.export(apply, params, x, batch_axis=None)
        self.assertEqual(exported.in_avals[0].shape, (3, 8))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "batch_axis=2"):
            mh.export(apply, params, x, batch_axis=2)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "apply function"):
            mh.export(params, apply, x)


if __name__ == "__main__":
    absltest.main()
