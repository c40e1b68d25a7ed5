"""Tests for mh.io.save / mh.io.load."""

import os
import tempfile
from unittest import mock
import zipfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

import minihaiku as mh
from minihaiku import io as mh_io


def _tree():
    rng = np.random.default_rng(0)
    return {
        "~/Linear_0/__call__/w": rng.normal(size=(3, 4)).astype(np.float32),
        "~/Linear_0/__call__/b": np.arange(4, dtype=np.int32),
        "~/Emb_0/__call__/e": rng.normal(size=(5, 2)).astype(ml_dtypes.bfloat16),
        "~/f16": np.float16(1.5) * np.ones((2,), np.float16),
        "~/mask": np.array([True, False]),
        "~/scalar": np.float32(3.25),
        "~/bf_scalar": np.array(2.5, ml_dtypes.bfloat16),
        "~/f8": np.array([0.5, -2.0], ml_dtypes.float8_e4m3fn),
    }


def _tempdir(test) -> str:
    # absltest's create_tempdir needs parsed flags, which pytest does not provide.
    tmp = tempfile.TemporaryDirectory()
    test.addCleanup(tmp.cleanup)
    return tmp.name


def _linear(x):
    w = mh.get_param("w", (x.shape[-1], 3))
    b = mh.get_param("b", (3,), jnp.bfloat16, init=jax.nn.initializers.ones)
    return x @ w + b


class SaveLoadTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")

    def test_round_trip_keeps_values_dtypes_and_order(self):
        tree = _tree()
        mh.io.save(self.path, tree)
        out = mh.io.load(self.path)
        self.assertEqual(list(out), list(tree))
        for key, value in tree.items():
            self.assertIsInstance(out[key], np.ndarray)
            self.assertEqual(out[key].dtype, np.asarray(value).dtype, key)
            self.assertEqual(out[key].shape, np.shape(value), key)
            # Bit-exact, including bfloat16 and float8.
            self.assertEqual(out[key].tobytes(), np.asarray(value).tobytes(), key)

    def test_file_is_a_plain_npz_keyed_by_paths(self):
        tree = _tree()
        mh.io.save(self.path, tree)
        with np.load(self.path) as npz:
            self.assertEqual(set(npz.files), set(tree) | {"__minihaiku__"})
            np.testing.assert_array_equal(npz["~/Linear_0/__call__/w"],
                                          tree["~/Linear_0/__call__/w"])
            # bfloat16 is stored as its raw bits.
            self.assertEqual(npz["~/Emb_0/__call__/e"].dtype, np.uint16)

    def test_params_from_init_round_trip_and_apply_agrees(self):
        f = mh.transform(_linear)
        x = jnp.arange(6.0).reshape(2, 3)
        params = f.init(jax.random.PRNGKey(1), x)
        mh.io.save(self.path, params)
        loaded = mh.io.load(self.path)
        self.assertEqual(loaded["~/b"].dtype, jnp.bfloat16)
        np.testing.assert_array_equal(f.apply(loaded, None, x), f.apply(params, None, x))
        # Loaded params also work under jit.
        np.testing.assert_array_equal(jax.jit(f.apply)(loaded, None, x),
                                      f.apply(params, None, x))

    def test_empty_tree(self):
        mh.io.save(self.path, {})
        self.assertEqual(mh.io.load(self.path), {})
        self.assertEqual(mh.io.load(self.path, like={}), {})

    def test_overwrite_replaces_the_file(self):
        mh.io.save(self.path, {"~/a": np.zeros(2)})
        mh.io.save(self.path, {"~/b": np.ones(3)})
        self.assertEqual(list(mh.io.load(self.path)), ["~/b"])
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])


class AtomicWriteTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")

    def _fail_after_first_entry(self):
        real = mh_io._write_entry
        calls = []

        def failing(zf, key, value):
            calls.append(key)
            if len(calls) > 2:
                raise OSError("disk full (simulated)")
            real(zf, key, value)

        return mock.patch.object(mh_io, "_write_entry", failing), calls

    def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(self):
        old = {"~/w": np.arange(3, dtype=np.float32)}
        mh.io.save(self.path, old)
        with open(self.path, "rb") as f:
            old_bytes = f.read()
        patch, calls = self._fail_after_first_entry()
        with patch, self.assertRaisesRegex(OSError, "simulated"):
            mh.io.save(self.path, _tree())
        self.assertGreater(len(calls), 2)  # The failure did happen mid-write.
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), old_bytes)
        np.testing.assert_array_equal(mh.io.load(self.path)["~/w"], old["~/w"])

    def test_failure_mid_write_without_old_file_creates_nothing(self):
        patch, _ = self._fail_after_first_entry()
        with patch, self.assertRaises(OSError):
            mh.io.save(self.path, _tree())
        self.assertEqual(os.listdir(self.dir), [])

    def test_failure_before_rename_keeps_old_file(self):
        mh.io.save(self.path, {"~/w": np.zeros(2)})
        with mock.patch.object(os, "replace", side_effect=KeyboardInterrupt):
            with self.assertRaises(KeyboardInterrupt):
                mh.io.save(self.path, {"~/w": np.ones(2)})
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])
        np.testing.assert_array_equal(mh.io.load(self.path)["~/w"], np.zeros(2))


class BadFileTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")
        mh.io.save(self.path, _tree())
        with open(self.path, "rb") as f:
            self.good = f.read()

    def _write(self, data: bytes) -> str:
        path = os.path.join(self.dir, "bad.npz")
        with open(path, "wb") as f:
            f.write(data)
        return path

    @parameterized.parameters(0.1, 0.5, 0.9, 0.999)
    def test_truncated_file_is_a_clear_error(self, fraction):
        path = self._write(self.good[:int(len(self.good) * fraction)])
        with self.assertRaisesRegex(mh.MiniHaikuError, "truncated or corrupt"):
            mh.io.load(path)

    def test_flipped_data_byte_is_a_clear_error(self):
        # Flip a byte inside the float32 data of the first array (CRC mismatch).
        data = bytearray(self.good)
        w = _tree()["~/Linear_0/__call__/w"].tobytes()
        at = bytes(data).index(w) + 5
        data[at] ^= 0xFF
        with self.assertRaisesRegex(mh.MiniHaikuError, "truncated or corrupt"):
            mh.io.load(self._write(bytes(data)))

    def test_header_disagreeing_with_data_is_corrupt(self):
        path = os.path.join(self.dir, "lying.npz")
        header = ('{"format": "minihaiku.io", "version": 1, '
                  '"entries": [["~/w", "float32", [9]]]}').encode()
        with zipfile.ZipFile(path, "w") as zf:
            with zf.open("__minihaiku__.npy", "w") as f:
                np.lib.format.write_array(f, np.frombuffer(header, np.uint8))
            with zf.open("~/w.npy", "w") as f:
                np.lib.format.write_array(f, np.zeros(3, np.float32))
        with self.assertRaisesRegex(mh.MiniHaikuError, r"'~/w' is float32\(3,\)"):
            mh.io.load(path)

    def test_foreign_npz_is_refused(self):
        path = os.path.join(self.dir, "foreign.npz")
        np.savez(path, w=np.ones(3))
        with self.assertRaisesRegex(mh.MiniHaikuError, "not written by mh.io.save"):
            mh.io.load(path)

    @parameterized.named_parameters(
        ("npy", None), ("text", b"hello, world\n"), ("empty", b""))
    def test_non_npz_file_is_refused(self, data):
        if data is None:
            path = os.path.join(self.dir, "array.npy")
            np.save(path, np.ones(3))
        else:
            path = self._write(data)
        with self.assertRaisesRegex(mh.MiniHaikuError, "not written by mh.io.save"):
            mh.io.load(path)

    def test_missing_file(self):
        path = os.path.join(self.dir, "nope.npz")
        with self.assertRaisesRegex(mh.MiniHaikuError, "no file at .*nope.npz") as cm:
            mh.io.load(path)
        # Also catchable as the usual "no such file" error.
        self.assertIsInstance(cm.exception, FileNotFoundError)

    def test_directory_is_a_clear_error(self):
        with self.assertRaisesRegex(mh.MiniHaikuError, "cannot read"):
            mh.io.load(self.dir)

    def test_bad_trees_refused_on_save(self):
        with self.assertRaisesRegex(mh.MiniHaikuError, "flat dict"):
            mh.io.save(self.path, [np.ones(2)])
        with self.assertRaisesRegex(mh.MiniHaikuError, "typed PRNG key"):
            mh.io.save(self.path, {"~/key": jax.random.key(0)})
        with self.assertRaisesRegex(mh.MiniHaikuError, "'~/obj' has dtype object"):
            mh.io.save(self.path, {"~/obj": np.array([None])})
        with self.assertRaisesRegex(mh.MiniHaikuError, "key 3"):
            mh.io.save(self.path, {3: np.ones(2)})
        # The good file is still there, unchanged.
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), self.good)


class LikeTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(_tempdir(self), "ckpt.npz")
        self.f = mh.transform(_linear)
        self.x = jnp.ones((2, 3))
        self.params = self.f.init(jax.random.PRNGKey(0), self.x)
        mh.io.save(self.path, self.params)

    def test_like_from_eval_shape_matches(self):
        like = jax.eval_shape(self.f.init, jax.random.PRNGKey(0), self.x)
        out = mh.io.load(self.path, like=like)
        self.assertEqual(set(out), set(self.params))
        for key in self.params:
            np.testing.assert_array_equal(out[key], self.params[key])

    def test_like_result_follows_like_order(self):
        like = dict(reversed(list(self.params.items())))
        self.assertEqual(list(mh.io.load(self.path, like=like)), list(like))

    def test_every_problem_listed_in_one_error(self):
        like = {
            "~/w": jax.ShapeDtypeStruct((4, 3), jnp.float32),   # wrong shape
            "~/b": jax.ShapeDtypeStruct((3,), jnp.float32),     # wrong dtype
            "~/extra": jax.ShapeDtypeStruct((2,), jnp.float32),  # missing
        }
        mh.io.save(self.path, {**self.params, "~/old": np.zeros(1)})  # unexpected
        with self.assertRaises(mh.MiniHaikuError) as cm:
            mh.io.load(self.path, like=like)
        msg = str(cm.exception)
        self.assertIn("missing from the file (1): ~/extra", msg)
        self.assertIn("unexpected in the file (1): ~/old", msg)
        self.assertIn("~/w: file has float32(3, 3), expected float32(4, 3)", msg)
        self.assertIn("~/b: file has bfloat16(3,), expected float32(3,)", msg)
        self.assertIn("strict=False", msg)

    def test_not_strict_loads_overlap_and_reports_missing(self):
        like = {
            "~/w": jnp.zeros((3, 3)),
            "~/b": jax.ShapeDtypeStruct((5,), jnp.bfloat16),    # wrong shape
            "~/extra": jax.ShapeDtypeStruct((2,), jnp.float32),  # missing
        }
        out, missing = mh.io.load(self.path, like=like, strict=False)
        self.assertEqual(list(out), ["~/w"])
        np.testing.assert_array_equal(out["~/w"], self.params["~/w"])
        self.assertEqual(missing, ["~/b", "~/extra"])

    def test_not_strict_without_like(self):
        out, missing = mh.io.load(self.path, strict=False)
        self.assertEqual(set(out), set(self.params))
        self.assertEqual(missing, [])

    def test_like_must_be_flat_dict(self):
        with self.assertRaisesRegex(mh.MiniHaikuError, "flat dict"):
            mh.io.load(self.path, like=(self.params, {}))


if __name__ == "__main__":
    absltest.main()
