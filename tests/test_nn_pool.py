"""Pooling: a NumPy loop reference, dm-haiku, shape broadcasting, jit, errors."""

import itertools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers import haiku_compare as ref


def _pool_ref(x, window, strides, padding, reduce):
    """Pools by looping over output positions; SAME pads as XLA (extra at the end)."""
    x = np.asarray(x)
    pads = []
    for n, w, s in zip(x.shape, window, strides, strict=True):
        if padding == "VALID":
            pads.append((0, 0))
        else:
            out = -(-n // s)
            total = max((out - 1) * s + w - n, 0)
            pads.append((total // 2, total - total // 2))
    out_shape = [(n + lo + hi - w) // s + 1
                 for n, (lo, hi), w, s in zip(x.shape, pads, window, strides, strict=True)]
    y = np.zeros(out_shape, x.dtype)
    for idx in itertools.product(*map(range, out_shape)):
        sl = []
        for i, (lo, _), w, s, n in zip(idx, pads, window, strides, x.shape, strict=True):
            start = i * s - lo
            sl.append(slice(max(start, 0), min(start + w, n)))
        y[idx] = reduce(x[tuple(sl)])  # Only real entries: SAME averages over them.
    return y


class PoolTest(parameterized.TestCase):

    @parameterized.product(padding=("SAME", "VALID"), strides=(1, 2), window=(2, 3))
    def test_matches_loop_reference(self, padding, strides, window):
        x = ref.randn(0, [2, 5, 6, 3])
        full = (1, window, window, 1)
        step = (1, strides, strides, 1)
        np.testing.assert_allclose(mh.nn.max_pool(x, window, strides, padding),
                                   _pool_ref(x, full, step, padding, np.max), rtol=1e-6)
        np.testing.assert_allclose(mh.nn.avg_pool(x, window, strides, padding),
                                   _pool_ref(x, full, step, padding, np.mean), rtol=1e-5)

    @parameterized.parameters(
        dict(window=3, strides=2, channel_axis=-1),
        dict(window=2, strides=1, channel_axis=1),
        dict(window=2, strides=2, channel_axis=None),
        dict(window=(2, 3, 1), strides=(1, 2, 1), channel_axis=-1),
        dict(window=(1, 2, 2, 1), strides=1, channel_axis=-1),
    )
    def test_same_as_haiku(self, window, strides, channel_axis):
        x = ref.randn(0, [2, 7, 6, 4])
        for padding in ("SAME", "VALID"):
            for ours, theirs in ((mh.nn.max_pool, hk.max_pool), (mh.nn.avg_pool, hk.avg_pool)):
                with self.subTest(padding=padding, fn=ours.__name__):
                    ref.assert_close(ours(x, window, strides, padding, channel_axis),
                                     theirs(x, window, strides, padding, channel_axis))

    def test_gradients_same_as_haiku(self):
        x = ref.randn(0, [2, 6, 6, 3])
        for ours, theirs in ((mh.nn.max_pool, hk.max_pool), (mh.nn.avg_pool, hk.avg_pool)):
            def loss(x, pool):
                return jnp.sum(pool(x, 3, 2, "SAME") ** 2)

            ref.assert_close(jax.grad(loss)(x, ours), jax.grad(loss)(x, theirs))

    def test_int_window_skips_batch_and_channel(self):
        x = jnp.arange(2 * 4 * 4 * 3.).reshape(2, 4, 4, 3)
        y = mh.nn.max_pool(x, 2, 2, "VALID")
        self.assertEqual(y.shape, (2, 2, 2, 3))
        np.testing.assert_array_equal(y, x[:, 1::2, 1::2, :])

    def test_same_averages_over_valid_entries(self):
        y = mh.nn.avg_pool(jnp.ones([1, 5, 5, 1]), 3, 2, "SAME")
        np.testing.assert_allclose(y, 1.0)

    def test_modules_jit_and_scan(self):
        x = ref.randn(0, [3, 2, 6, 6, 2])

        def net(xs):
            pool = mh.nn.MaxPool(2, 2, "VALID")
            avg = mh.nn.AvgPool((3, 3, 1), 1, "SAME")
            return mh.lifted.scan(lambda c, x: (c, avg(pool(x))), 0., xs)[1]

        f = mh.transform(net)
        self.assertEqual(f.init(0, x), {})
        want = jnp.stack([hk.avg_pool(hk.max_pool(xi, 2, 2, "VALID"), (3, 3, 1), 1, "SAME")
                          for xi in x])
        ref.assert_close(f.apply({}, None, x), want)
        ref.assert_close(jax.jit(f.apply)({}, None, x), want)

    def test_errors(self):
        x = jnp.ones([1, 4, 4, 1])
        with self.assertRaisesRegex(mh.InvalidArgumentError, "padding='same'.*'SAME' or 'VALID'"):
            mh.nn.max_pool(x, 2, 2, "same")
        with self.assertRaisesRegex(mh.ModuleInputError, r"window_shape=\(1, 1, 2, 2, 1\)"):
            mh.nn.avg_pool(x, (1, 1, 2, 2, 1), 1, "SAME")
        with self.assertRaisesRegex(mh.InvalidArgumentError, "strides=0"):
            mh.nn.max_pool(x, 2, 0, "SAME")
        with self.assertRaisesRegex(mh.ModuleInputError, "channel_axis=4"):
            mh.nn.max_pool(x, 2, 2, "SAME", channel_axis=4)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "MaxPool_0.*padding"):
            mh.transform(lambda x: mh.nn.MaxPool(2, 2, "FULL")(x)).init(0, x)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "AvgPool_0.*window_shape=0"):
            mh.transform(lambda x: mh.nn.AvgPool(0, 2, "SAME")(x)).init(0, x)


if __name__ == "__main__":
    absltest.main()
