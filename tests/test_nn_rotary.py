"""Tests for mh.nn.apply_rotary / RotaryEmbedding against a hand-written formula."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh


def rotary_reference(x, positions, theta):
    """Feature ``i`` and ``i + d/2`` as one complex number, turned by ``pos * theta**(-2i/d)``."""
    x = np.asarray(x, np.float64)
    d = x.shape[-1]
    freqs = theta ** (-np.arange(0, d, 2) / d)                       # [d/2]
    angles = np.asarray(positions, np.float64)[..., None, None] * freqs  # [..., T, 1, d/2]
    z = (x[..., : d // 2] + 1j * x[..., d // 2:]) * np.exp(1j * angles)
    return np.concatenate([z.real, z.imag], axis=-1)


class ApplyRotaryTest(parameterized.TestCase):

    @parameterized.parameters(10000.0, 500000.0, 1e6)
    def test_matches_the_complex_rotation(self, theta):
        x = np.random.default_rng(0).normal(size=(2, 7, 3, 8)).astype(np.float32)
        positions = np.array([[0, 1, 2, 3, 4, 5, 6], [40, 41, 42, 43, 44, 45, 46]])
        out = mh.nn.apply_rotary(x, positions, theta=theta)
        self.assertEqual(out.dtype, jnp.float32)
        np.testing.assert_allclose(out, rotary_reference(x, positions, theta), atol=2e-5)

    def test_positions_broadcast_over_the_batch(self):
        x = np.random.default_rng(1).normal(size=(3, 5, 2, 4)).astype(np.float32)
        np.testing.assert_allclose(mh.nn.apply_rotary(x, np.arange(5)),
                                   rotary_reference(x, np.arange(5), 10000.0), atol=1e-5)

    def test_position_zero_is_the_identity(self):
        x = np.random.default_rng(2).normal(size=(1, 1, 2, 6)).astype(np.float32)
        np.testing.assert_array_equal(mh.nn.apply_rotary(x, np.zeros(1, int)), x)

    def test_query_key_products_depend_only_on_the_distance(self):
        rng = np.random.default_rng(3)
        q, k = rng.normal(size=(2, 1, 1, 1, 16)).astype(np.float32)
        dots = [float(jnp.sum(mh.nn.apply_rotary(q, np.array([p + 7])) *
                              mh.nn.apply_rotary(k, np.array([p]))))
                for p in (0, 5, 30)]
        np.testing.assert_allclose(dots, [dots[0]] * 3, rtol=1e-4)

    def test_keeps_bfloat16(self):
        x = jnp.ones((1, 3, 2, 4), jnp.bfloat16)
        self.assertEqual(mh.nn.apply_rotary(x, jnp.arange(3)).dtype, jnp.bfloat16)

    def test_bad_input_is_refused(self):
        with self.assertRaisesRegex(mh.ModuleInputError, r"even head_dim"):
            mh.nn.apply_rotary(jnp.ones((1, 3, 2, 5)), jnp.arange(3))
        with self.assertRaisesRegex(mh.ModuleInputError, r"\[\.\.\., T, num_heads, head_dim\]"):
            mh.nn.apply_rotary(jnp.ones((3, 4)), jnp.arange(3))
        with self.assertRaisesRegex(mh.ModuleInputError, r"positions of shape \(4,\)"):
            mh.nn.apply_rotary(jnp.ones((1, 3, 2, 4)), jnp.arange(4))


class RotaryEmbeddingTest(absltest.TestCase):

    def test_module_applies_its_theta_and_has_no_params(self):
        x = np.random.default_rng(4).normal(size=(1, 4, 2, 8)).astype(np.float32)
        f = mh.transform(lambda x: mh.nn.RotaryEmbedding(theta=500.0)(x, jnp.arange(4)))
        self.assertEqual(f.init(0, x), {})
        np.testing.assert_allclose(f.apply({}, None, x),
                                   rotary_reference(x, np.arange(4), 500.0), atol=1e-5)

    def test_bad_theta(self):
        f = mh.transform(lambda: mh.nn.RotaryEmbedding(theta=-1.0))
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"RotaryEmbedding_0.*theta=-1.0"):
            f.init(0)


if __name__ == "__main__":
    absltest.main()
