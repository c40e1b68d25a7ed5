"""PRNGSequence behaviour and thread safety of the frame stack."""

import concurrent.futures
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh


class PRNGSequenceTest(absltest.TestCase):

    def test_keys_distinct_deterministic_and_seed_equals_key(self):
        a = mh.PRNGSequence(0).take(40)
        b = mh.PRNGSequence(jax.random.PRNGKey(0)).take(40)
        self.assertLen({tuple(np.asarray(k)) for k in a}, 40)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        c = mh.PRNGSequence(1).take(1)[0]
        self.assertFalse(np.array_equal(a[0], c))

    def test_keys_are_valid_jax_keys_and_iterable(self):
        seq = mh.PRNGSequence(jax.random.key(3))
        k1, k2 = next(seq), next(iter(seq))
        self.assertTrue(jax.dtypes.issubdtype(k1.dtype, jax.dtypes.prng_key))
        self.assertFalse(np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2)))
        self.assertEqual(jax.random.normal(k1, (3,)).shape, (3,))

    def test_keys_independent_of_block_boundaries(self):
        # Drawing through several blocks must never repeat a key from an earlier block.
        keys = mh.PRNGSequence(5).take(100)
        self.assertLen({tuple(np.asarray(k)) for k in keys}, 100)

    def test_bad_seed(self):
        with self.assertRaisesRegex(mh.InvalidRngError, "needs a key or an int seed"):
            mh.PRNGSequence(None)
        with self.assertRaisesRegex(mh.InvalidRngError, "PRNG key"):
            mh.PRNGSequence("seed")

    def test_shared_sequence_across_threads_never_repeats_a_key(self):
        n_threads, per_thread = 8, 150
        seq = mh.PRNGSequence(11)
        barrier = threading.Barrier(n_threads)

        def draw(_):
            barrier.wait()
            return [tuple(np.asarray(next(seq))) for _ in range(per_thread)]

        with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
            drawn = [k for keys in pool.map(draw, range(n_threads)) for k in keys]
        serial = {tuple(np.asarray(k)) for k in mh.PRNGSequence(11).take(len(drawn))}
        self.assertLen(set(drawn), len(drawn))
        # The threads drew exactly the keys one thread would have drawn.
        self.assertEqual(set(drawn), serial)


class RngHelpersTest(absltest.TestCase):

    def test_next_rng_keys_is_one_draw_split(self):
        def f():
            keys = mh.next_rng_keys(3)
            return keys, mh.next_rng_key()

        keys, after = mh.transform(f).apply({}, 0)
        first, second = mh.PRNGSequence(0).take(2)
        np.testing.assert_array_equal(keys, jax.random.split(first, 3))
        np.testing.assert_array_equal(after, second)
        self.assertEqual(keys.shape, (3, 2))
        typed, _ = mh.transform(f).apply({}, jax.random.key(0))
        self.assertEqual(typed.shape, (3,))
        self.assertTrue(jax.dtypes.issubdtype(typed.dtype, jax.dtypes.prng_key))

    def test_next_rng_keys_refuses_a_bad_count_and_no_rng(self):
        for n in (-1, 2.0, True, "3"):
            with self.assertRaisesRegex(mh.InvalidArgumentError, "non-negative int"):
                mh.transform(lambda n=n: mh.next_rng_keys(n)).apply({}, 0)
        with self.assertRaisesRegex(mh.NoRngError, "next_rng_keys"):
            mh.transform(lambda: mh.next_rng_keys(2)).apply({}, None)

    def test_with_rng_draws_from_its_key_then_restores_the_outer_sequence(self):
        def f():
            a = mh.next_rng_key()
            with mh.with_rng(jax.random.PRNGKey(7)):
                inner = mh.next_rng_key(), mh.next_rng_key()
            return a, inner, mh.next_rng_key()

        a, inner, b = mh.transform(f).apply({}, 0)
        outer_expected = mh.PRNGSequence(0).take(2)
        np.testing.assert_array_equal(a, outer_expected[0])
        np.testing.assert_array_equal(b, outer_expected[1])
        for got, want in zip(inner, mh.PRNGSequence(7).take(2), strict=True):
            np.testing.assert_array_equal(got, want)

    def test_with_rng_gives_keys_to_a_transform_without_rng(self):
        x = jnp.ones((4, 8))

        def f(x):
            with mh.with_rng(3):
                out = mh.nn.dropout(0.5, x)
            # Restored: the transform itself still has no rng.
            self.assertIsNone(mh.maybe_next_rng_key())
            return out

        out = mh.transform(f).apply({}, None, x)
        keep = jax.random.bernoulli(next(mh.PRNGSequence(3)), 0.5, x.shape)
        np.testing.assert_allclose(out, keep * x / 0.5)

    def test_with_rng_validates_its_key_and_needs_a_transform(self):
        with self.assertRaisesRegex(mh.NotInTransformError, "with_rng"):
            with mh.with_rng(0):
                pass
        for bad in (None, 1.5, jnp.zeros(3, jnp.uint32)):
            with self.assertRaisesRegex(mh.InvalidRngError, "with_rng"):
                def f(bad=bad):
                    with mh.with_rng(bad):
                        pass
                mh.transform(f).apply({}, None)


class Linear(mh.Module):

    def __init__(self, size):
        super().__init__()
        self.size = size

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size))
        noise = jax.random.normal(mh.next_rng_key(), (self.size,))
        return jnp.tanh(x @ w) + 0 * noise


def _net(x):
    for _ in range(4):
        x = Linear(6)(x)
    n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
    mh.set_state("n", n + 1)
    return x


class ThreadsTest(absltest.TestCase):

    def test_concurrent_init_apply_equals_serial(self):
        init, apply = mh.transform_with_state(_net)
        x = jnp.ones((2, 3))

        def job(seed):
            params, state = init(seed, x)
            out, state = apply(params, state, seed, x)
            return params, out, state

        serial = [job(s) for s in range(8)]
        barrier = threading.Barrier(4)

        def threaded(seed):
            barrier.wait() if seed < 4 else None
            return job(seed)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(threaded, range(8)))
        for (p1, o1, s1), (p2, o2, s2) in zip(serial, parallel, strict=True):
            self.assertEqual(list(p1), list(p2))
            for k in p1:
                np.testing.assert_array_equal(p1[k], p2[k])
            np.testing.assert_array_equal(o1, o2)
            self.assertEqual(int(s1["~/n"]), int(s2["~/n"]))

    def test_frames_are_per_thread(self):
        inside = threading.Event()
        release = threading.Event()
        seen = []

        def f():
            inside.set()
            release.wait(10)
            return 1

        t = threading.Thread(target=lambda: mh.transform(f).apply({}, None))
        t.start()
        inside.wait(10)
        seen.append(mh.inside_transform())
        release.set()
        t.join()
        self.assertEqual(seen, [False])


if __name__ == "__main__":
    absltest.main()
