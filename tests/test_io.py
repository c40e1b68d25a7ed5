"""Tests for mh.io.save / mh.io.load / mh.io.load_partial."""

import doctest
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import zipfile
from typing import NamedTuple
from unittest import mock

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
from absl.testing import absltest, parameterized

import minihaiku as mh
from minihaiku import io as mh_io

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_V1_FIXTURE = os.path.join(_REPO, "tests", "testdata", "io_v1_params.npz")

# Every non-native dtype jnp knows: all stored as raw bits.
_ML_DTYPES = ["bfloat16", "float8_e3m4", "float8_e4m3", "float8_e4m3b11fnuz", "float8_e4m3fn",
              "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
              "float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "int2", "int4", "uint2",
              "uint4"]
_NOT_ON_XLA_CPU = ["float6_e2m3fn", "float6_e3m2fn"]  # jnp knows them, XLA:CPU does not.
_NATIVE_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "uint64", "float16", "float32", "float64", "complex64", "complex128"]


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


def _assert_trees_identical(test, got, want):
    test.assertEqual(jax.tree.structure(got), jax.tree.structure(want))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        w = np.asarray(w)
        test.assertEqual(g.dtype, w.dtype)
        test.assertEqual(g.shape, w.shape)
        test.assertEqual(np.asarray(g).tobytes(), w.tobytes())


def _run_python(code: str, umask: int | None = None, env: dict | None = None) -> str:
    """Runs ``code`` in a fresh interpreter (under ``umask``, set by the shell)."""
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    if umask is not None:  # Not preexec_fn: forking a multithreaded JAX process is unsafe.
        argv = ["/bin/sh", "-c", f'umask {umask:03o} && exec "$0" "$@"'] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "PYTHONPATH": _REPO, **(env or {})})
    if out.returncode:
        raise AssertionError(f"subprocess failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


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
            self.assertEqual(out[key].tobytes(), np.asarray(value).tobytes(), key)

    @parameterized.parameters(*(_ML_DTYPES + _NATIVE_DTYPES))
    def test_every_numeric_dtype_round_trips_bit_exactly(self, name):
        dtype = jnp.dtype(name)
        # Every bit pattern of a small dtype; random bits of a wide one (NaNs included).
        bits = np.random.default_rng(1).integers(0, 256, size=24 * dtype.itemsize)
        value = np.frombuffer(bits.astype(np.uint8).tobytes(), dtype).reshape(2, 3, 4)
        if name == "bool":
            value = value.view(np.uint8) % 2 == 1
        tree = {"~/x": value, "~/t": value.T}  # .T: a Fortran-ordered array.
        if name not in _NOT_ON_XLA_CPU and jax.dtypes.canonicalize_dtype(dtype) == dtype:
            tree["~/j"] = jnp.asarray(value)  # A jax.Array of the same dtype.
        mh.io.save(self.path, tree)
        out = mh.io.load(self.path)
        self.assertEqual(list(out), list(tree))
        for key, saved in tree.items():
            saved = np.asarray(saved)
            self.assertEqual(out[key].dtype, saved.dtype)
            self.assertEqual(out[key].shape, saved.shape)
            self.assertEqual(out[key].tobytes(), saved.tobytes())

    def test_entries_have_neutral_names(self):
        mh.io.save(self.path, _tree())
        with zipfile.ZipFile(self.path) as zf:
            names = zf.namelist()
        self.assertEqual(names, ["__minihaiku__.npy"] + [f"{i}.npy" for i in range(8)])
        with np.load(self.path) as npz:
            header = json.loads(npz["__minihaiku__"].tobytes())
            paths = [path for path, _, _ in header["entries"]]
            emb = npz[str(paths.index("['~/Emb_0/__call__/e']"))]
        self.assertEqual(emb.dtype, np.uint16)  # bfloat16 as its raw bits.
        self.assertEqual(header["entries"][paths.index("['~/Emb_0/__call__/e']")],
                         ["['~/Emb_0/__call__/e']", "bfloat16", [5, 2]])

    def test_keys_never_alias(self):
        keys = ["w", "w.npy", "__minihaiku__", "__minihaiku__.npy", "0", "0.npy", "",
                "a\x00b", "\x00", "../../etc/passwd", "a/b/", "ü€", "\ud800", "'][\"", "1"]
        tree = {k: np.full((2,), i, np.int32) for i, k in enumerate(keys)}
        mh.io.save(self.path, tree)
        out = mh.io.load(self.path)
        self.assertEqual(list(out), keys)
        for i, k in enumerate(keys):
            np.testing.assert_array_equal(out[k], np.full((2,), i), err_msg=repr(k))

    def test_params_from_init_round_trip_and_apply_agrees(self):
        f = mh.transform(_linear)
        x = jnp.arange(6.0).reshape(2, 3)
        params = f.init(jax.random.PRNGKey(1), x)
        mh.io.save(self.path, params)
        loaded = mh.io.load(self.path)
        self.assertEqual(loaded["~/b"].dtype, jnp.bfloat16)
        np.testing.assert_array_equal(f.apply(loaded, None, x), f.apply(params, None, x))
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

    def test_float0_gradients_are_stored_by_shape(self):
        grads = jax.grad(lambda p: p["w"].sum() + p["n"].sum(), allow_int=True)(
            {"w": jnp.ones(2), "n": jnp.arange(3)})
        self.assertEqual(grads["n"].dtype, jax.dtypes.float0)
        mh.io.save(self.path, grads)
        for out in (mh.io.load(self.path), mh.io.load(self.path, like=grads)):
            self.assertEqual(out["n"].dtype, jax.dtypes.float0)
            self.assertEqual(out["n"].shape, (3,))
            np.testing.assert_array_equal(out["w"], np.ones(2))
        # float0 leaves are usable as gradients again.
        updated = jax.tree.map(lambda p, g: p if g.dtype == jax.dtypes.float0 else p - g,
                               {"w": jnp.ones(2), "n": jnp.arange(3)}, mh.io.load(self.path))
        np.testing.assert_array_equal(updated["w"], np.zeros(2))

    def test_python_scalars_get_jax_dtypes(self):
        mh.io.save(self.path, {"step": 3, "lr": 0.5, "flag": True})
        out = mh.io.load(self.path)
        self.assertEqual({k: v.dtype for k, v in out.items()},
                         {"step": jnp.asarray(3).dtype, "lr": jnp.asarray(0.5).dtype,
                          "flag": np.dtype(bool)})
        like = jax.eval_shape(lambda: {"step": 0, "lr": 0.0, "flag": False})
        self.assertEqual(int(mh.io.load(self.path, like=like)["step"]), 3)


class FormatVersion1Test(absltest.TestCase):
    """Files written by the first format (entries named by key) still load."""

    def _expected(self):
        return {
            "~/Linear_0/__call__/w": np.arange(12, dtype=np.float32).reshape(3, 4) / 8,
            "~/Linear_0/__call__/b": np.arange(4, dtype=np.int32),
            "~/Embed_0/__call__/embeddings": (np.arange(6, dtype=np.float32).reshape(3, 2)
                                              - 2.5).astype(ml_dtypes.bfloat16),
            "~/mask": np.array([True, False]),
            "~/scalar": np.array(3.25, np.float32),
            "~/f8": np.array([0.5, -2.0], ml_dtypes.float8_e4m3fn),
            "~/i4": np.array([-8, 7, 1], ml_dtypes.int4),
        }

    def test_fixture_is_version_1(self):
        with zipfile.ZipFile(_V1_FIXTURE) as zf:
            self.assertIn("~/Linear_0/__call__/w.npy", zf.namelist())
            header = zf.read("__minihaiku__.npy")
        self.assertIn(b'"version": 1', header)

    def test_loads_exactly(self):
        out = mh.io.load(_V1_FIXTURE)
        self.assertEqual(list(out), list(self._expected()))
        _assert_trees_identical(self, out, self._expected())

    def test_loads_with_like_and_partially(self):
        like = jax.eval_shape(lambda: self._expected())
        _assert_trees_identical(self, mh.io.load(_V1_FIXTURE, like=like), self._expected())
        loaded, missing = mh.io.load_partial(
            _V1_FIXTURE, like={"~/mask": np.zeros(2, bool), "~/new": np.zeros(1)})
        np.testing.assert_array_equal(loaded["~/mask"], [True, False])
        self.assertEqual(missing, ["['~/new']"])


class RefuseBeforeWritingTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")

    @parameterized.named_parameters(
        ("str_array", {"~/s": np.array(["a", "b"])}, r"\['~/s'\] \(ndarray\) has dtype <U1"),
        ("bytes_array", {"~/s": np.array([b"a"])}, r"\['~/s'\] \(ndarray\) has dtype \|S1"),
        ("list_of_str", {"~/names": ["a", "b"]}, r"\['~/names'\]\[0\] \(str\) has dtype"),
        ("object_array", {"~/o": np.array([None, 1])}, r"\['~/o'\] .* dtype object"),
        ("python_object", {"~/o": object()}, r"\['~/o'\] \(object\) has dtype object"),
        ("structured", {"~/r": np.zeros(2, [("a", "f4")])}, r"\['~/r'\] .*dtype"),
        ("datetime", {"~/t": np.array(["2020-01-01"], "datetime64[D]")}, "datetime64"),
        ("typed_key", {"~/key": jax.random.key(0)}, r"\['~/key'\] is a typed PRNG key"),
        ("shape_dtype_struct", {"~/w": jax.ShapeDtypeStruct((2,), jnp.float32)},
         "ShapeDtypeStruct, which has no values"),
        ("overflowing_int", {"~/n": 2**70}, r"\['~/n'\] \(int\) is not an array"),
        ("unsortable_keys", {1: np.ones(1), "a": np.ones(1)}, "cannot be flattened"),
    )
    def test_refused_with_path_and_no_file_written(self, tree, message):
        with self.assertRaisesRegex(mh.CheckpointError, message) as cm:
            mh.io.save(self.path, tree)
        self.assertIn(self.path, str(cm.exception))
        self.assertEqual(os.listdir(self.dir), [])

    def test_refused_tree_leaves_an_old_file_untouched(self):
        mh.io.save(self.path, _tree())
        with open(self.path, "rb") as f:
            good = f.read()
        with self.assertRaises(mh.CheckpointError):
            mh.io.save(self.path, {**_tree(), "~/zz_names": np.array(["x"])})
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), good)
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])

    def test_tracer_refused(self):
        def step(w):
            mh.io.save(self.path, {"~/w": w})
            return w

        with self.assertRaisesRegex(mh.CheckpointError, r"\['~/w'\] is a tracer"):
            jax.jit(step)(jnp.ones(2))
        self.assertEqual(os.listdir(self.dir), [])

    def test_none_is_structure_not_a_leaf(self):
        # As in JAX, None is an empty subtree: kept in the structure, no entry.
        tree = {"a": None, "b": np.ones(1), "c": [None, (None,)]}
        mh.io.save(self.path, tree)
        with zipfile.ZipFile(self.path) as zf:
            self.assertLen(zf.namelist(), 2)
        out = mh.io.load(self.path)
        self.assertEqual(jax.tree.structure(out), jax.tree.structure(tree))
        self.assertEqual(out["c"], [None, (None,)])


class Adam(NamedTuple):
    count: jax.Array
    mu: dict


class PytreeTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(_tempdir(self), "ckpt.npz")
        self.f = mh.transform(lambda x: mh.nn.Linear(3)(mh.nn.LayerNorm(-1, True, True)(x)))
        self.x = jnp.ones((2, 4))
        self.params = self.f.init(jax.random.PRNGKey(0), self.x)

    def _train_state(self):
        opt = optax.adamw(1e-2)
        return {"params": self.params, "opt_state": opt.init(self.params),
                "step": jnp.asarray(7)}

    def test_optax_adamw_state_and_step_round_trip_into_like(self):
        state = self._train_state()
        # Make the moments non-trivial.
        state["opt_state"] = optax.adamw(1e-2).update(
            jax.tree.map(jnp.ones_like, self.params), state["opt_state"], self.params)[1]
        mh.io.save(self.path, state)
        out = mh.io.load(self.path, like=jax.eval_shape(self._train_state))
        _assert_trees_identical(self, out, state)
        self.assertIsInstance(out["opt_state"][0], optax.ScaleByAdamState)
        self.assertIsInstance(out["opt_state"][1], optax.EmptyState)
        # Also into a like of real arrays.
        _assert_trees_identical(self, mh.io.load(self.path, like=self._train_state()), state)

    def test_header_names_leaves_by_keystr(self):
        mh.io.save(self.path, self._train_state())
        with zipfile.ZipFile(self.path) as zf:
            header = zf.read("__minihaiku__.npy").decode("latin-1")
        self.assertIn(r"['opt_state'][0].mu['~/Linear_0/__call__/w']", header)
        self.assertIn("['step']", header)

    def test_namedtuples_need_like(self):
        mh.io.save(self.path, self._train_state())
        with self.assertRaisesRegex(
                mh.CheckpointError, r"holds a ScaleByAdamState at \['opt_state'\]\[0\].*like="):
            mh.io.load(self.path)

    def test_masked_state_with_masked_nodes_and_empty_states(self):
        mask = {k: "/b" not in k for k in self.params}
        opt = optax.chain(optax.masked(optax.add_decayed_weights(0.1), mask),
                          optax.masked(optax.adam(1e-3), mask))
        state = opt.init(self.params)
        self.assertIn(optax.MaskedNode(), jax.tree.leaves(
            state, is_leaf=lambda n: isinstance(n, optax.MaskedNode)))
        mh.io.save(self.path, {"opt_state": state})
        out = mh.io.load(self.path, like={"opt_state": jax.eval_shape(opt.init, self.params)})
        _assert_trees_identical(self, out["opt_state"], state)

    def test_dicts_lists_tuples_and_none_rebuilt_without_like(self):
        tree = {"b": {"x": np.ones(2), "empty": {}}, "a": [np.zeros(1), (np.int32(3), None)],
                "t": (), 5: np.float32(1)}
        tree = {str(k): v for k, v in tree.items()} | {"n": None}
        mh.io.save(self.path, tree)
        out = mh.io.load(self.path)
        self.assertEqual(list(out), list(tree))
        self.assertEqual(out["b"]["empty"], {})
        self.assertEqual(out["t"], ())
        self.assertIsInstance(out["a"], list)
        self.assertIsInstance(out["a"][1], tuple)
        _assert_trees_identical(self, out, tree)

    def test_tuple_and_custom_namedtuple_with_like(self):
        tree = (self.params, Adam(jnp.asarray(2), {"m": jnp.ones(3)}))
        mh.io.save(self.path, tree)
        out = mh.io.load(self.path, like=jax.eval_shape(lambda: tree))
        self.assertIsInstance(out[1], Adam)
        _assert_trees_identical(self, out, tree)

    def test_like_mismatches_all_listed_in_one_error(self):
        mh.io.save(self.path, self._train_state())
        like = jax.eval_shape(self._train_state)
        del like["step"]                                            # unexpected in the file
        like["epoch"] = jax.ShapeDtypeStruct((), jnp.int32)         # missing from the file
        w = "~/Linear_0/__call__/w"
        like["params"] = {**like["params"], w: jax.ShapeDtypeStruct((5, 3), jnp.float32)}
        with self.assertRaises(mh.CheckpointError) as cm:
            mh.io.load(self.path, like=like)
        msg = str(cm.exception)
        self.assertIn(self.path, msg)
        self.assertIn("missing from the file (1): ['epoch']", msg)
        self.assertIn("unexpected in the file (1): ['step']", msg)
        self.assertIn(f"['params']['{w}']: file has float32(4, 3), expected float32(5, 3)", msg)
        self.assertIn("load_partial", msg)

    def test_flat_params_mismatch_message(self):
        mh.io.save(self.path, {**self.params, "~/old": np.zeros(1)})
        like = dict(self.params)
        like["~/LayerNorm_0/__call__/scale"] = jax.ShapeDtypeStruct((4,), jnp.bfloat16)
        with self.assertRaisesRegex(mh.CheckpointError, (
                r"unexpected in the file \(1\): \['~/old'\][\s\S]*"
                r"scale'\]: file has float32\(4,\), expected bfloat16\(4,\)")):
            mh.io.load(self.path, like=like)

    def test_non_array_like_leaf_is_refused(self):
        mh.io.save(self.path, {"a": np.ones(1)})
        with self.assertRaisesRegex(mh.CheckpointError, r"`like` at \['a'\] is a str"):
            mh.io.load(self.path, like={"a": "x"})

    def test_resume_equals_uninterrupted_training(self):
        opt = optax.adamw(1e-2, weight_decay=1e-3)
        target = jnp.arange(6.0).reshape(2, 3)

        @jax.jit
        def step(state):
            loss = lambda p: jnp.mean((self.f.apply(p, None, self.x) - target) ** 2)  # noqa: E731
            grads = jax.grad(loss)(state["params"])
            updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
            return {"params": optax.apply_updates(state["params"], updates),
                    "opt_state": opt_state, "step": state["step"] + 1}

        start = {"params": self.params, "opt_state": opt.init(self.params),
                 "step": jnp.asarray(0)}
        straight = start
        for _ in range(10):
            straight = step(straight)
        resumed = start
        for _ in range(4):
            resumed = step(resumed)
        mh.io.save(self.path, resumed)
        resumed = mh.io.load(self.path, like=jax.eval_shape(lambda: start))
        self.assertEqual(int(resumed["step"]), 4)
        for _ in range(6):
            resumed = step(resumed)
        _assert_trees_identical(self, resumed, straight)


class LoadPartialTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(_tempdir(self), "ckpt.npz")
        self.f = mh.transform(_linear)
        self.params = self.f.init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
        mh.io.save(self.path, self.params)

    def test_loads_what_fits_and_keeps_like_elsewhere(self):
        fresh = {"~/w": jnp.zeros((3, 3)),
                 "~/b": jnp.zeros((5,), jnp.bfloat16),       # another shape
                 "~/extra": jnp.full((2,), 4.0)}              # not in the file
        loaded, missing = mh.io.load_partial(self.path, like=fresh)
        self.assertEqual(set(loaded), set(fresh))
        np.testing.assert_array_equal(loaded["~/w"], self.params["~/w"])
        self.assertIs(loaded["~/b"], fresh["~/b"])
        self.assertIs(loaded["~/extra"], fresh["~/extra"])
        self.assertEqual(missing, ["['~/b']", "['~/extra']"])

    def test_complete_like_has_nothing_missing(self):
        loaded, missing = mh.io.load_partial(self.path, like=self.params)
        self.assertEqual(missing, [])
        _assert_trees_identical(self, loaded, self.params)

    def test_strict_argument_is_gone(self):
        with self.assertRaises(TypeError):
            mh.io.load(self.path, strict=False)  # pytype: disable=wrong-keyword-args


class FileSystemTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = _tempdir(self)
        self.path = os.path.join(self.dir, "ckpt.npz")

    def test_missing_directory_names_the_target(self):
        path = os.path.join(self.dir, "no", "such", "dir", "p.npz")
        with self.assertRaises(FileNotFoundError) as cm:
            mh.io.save(path, _tree())
        self.assertIn(path, str(cm.exception))
        self.assertIn("create the directory", str(cm.exception))
        self.assertNotIn(".mh-", str(cm.exception))
        self.assertEqual(os.listdir(self.dir), [])

    def test_directory_as_path_names_it(self):
        with self.assertRaisesRegex(IsADirectoryError, f"'{self.dir}' is a directory"):
            mh.io.save(self.dir, _tree())
        self.assertEqual(os.listdir(self.dir), [])
        with self.assertRaisesRegex(mh.CheckpointError, "cannot read"):
            mh.io.load(self.dir)

    def test_longest_legal_file_name_works(self):
        name_max = os.pathconf(self.dir, "PC_NAME_MAX")
        path = os.path.join(self.dir, "p" * (name_max - 4) + ".npz")
        mh.io.save(path, _tree())
        _assert_trees_identical(self, mh.io.load(path), _tree())
        self.assertEqual(os.listdir(self.dir), [os.path.basename(path)])

    def test_too_long_file_name_names_the_target(self):
        name_max = os.pathconf(self.dir, "PC_NAME_MAX")
        path = os.path.join(self.dir, "p" * (name_max + 1))
        with self.assertRaises(OSError) as cm:
            mh.io.save(path, _tree())
        self.assertIn(path, str(cm.exception))
        self.assertNotIn(".mh-", str(cm.exception))
        self.assertEqual(os.listdir(self.dir), [])

    @parameterized.named_parameters(
        ("bytes", lambda p: os.fsencode(p)), ("pathlib", pathlib.Path))
    def test_bytes_and_pathlib_paths(self, convert):
        mh.io.save(convert(self.path), _tree())
        _assert_trees_identical(self, mh.io.load(convert(self.path)), _tree())
        loaded, missing = mh.io.load_partial(convert(self.path), like=_tree())
        self.assertEqual(missing, [])
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])

    def test_undecodable_bytes_path(self):
        path = os.fsencode(self.dir) + b"/\xff\xfe.npz"
        mh.io.save(path, _tree())
        self.assertEqual(os.listdir(os.fsencode(self.dir)), [b"\xff\xfe.npz"])
        _assert_trees_identical(self, mh.io.load(path), _tree())

    def test_permission_error_names_the_target_not_the_temp_file(self):
        def refuse(name, *args, **kwargs):
            raise PermissionError(13, "Permission denied", name)

        with mock.patch.object(os, "open", refuse):
            with self.assertRaises(PermissionError) as cm:
                mh.io.save(self.path, _tree())
        self.assertIn(self.path, str(cm.exception))
        self.assertIn("write access", str(cm.exception))
        self.assertNotIn(".mh-", str(cm.exception))
        self.assertEqual(os.listdir(self.dir), [])

    def test_concurrent_saves_leave_one_whole_file(self):
        trees = [{"~/w": np.full((1000,), i, np.int32)} for i in range(8)]
        threads = [threading.Thread(target=mh.io.save, args=(self.path, t)) for t in trees]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = mh.io.load(self.path)["~/w"]
        self.assertIn(int(out[0]), range(8))
        np.testing.assert_array_equal(out, trees[int(out[0])]["~/w"])
        self.assertEqual(os.listdir(self.dir), ["ckpt.npz"])

    def test_non_path_is_refused(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "path must be a str"):
            mh.io.save(3, _tree())
        with self.assertRaisesRegex(mh.InvalidArgumentError, "path must be a str"):
            mh.io.load(None)

    def test_symlink_writes_its_target_and_stays_a_link(self):
        os.mkdir(os.path.join(self.dir, "real"))
        target = os.path.join(self.dir, "real", "ckpt.npz")
        mh.io.save(target, {"~/w": np.zeros(2)})
        link = os.path.join(self.dir, "latest.npz")
        os.symlink(os.path.join("real", "ckpt.npz"), link)
        mh.io.save(link, {"~/w": np.ones(2)})
        self.assertTrue(os.path.islink(link))
        np.testing.assert_array_equal(mh.io.load(target)["~/w"], np.ones(2))
        np.testing.assert_array_equal(mh.io.load(link)["~/w"], np.ones(2))
        self.assertEqual(sorted(os.listdir(os.path.join(self.dir, "real"))), ["ckpt.npz"])

    def test_dangling_symlink_creates_its_target(self):
        link = os.path.join(self.dir, "latest.npz")
        os.symlink("new.npz", link)
        mh.io.save(link, {"~/w": np.ones(2)})
        self.assertTrue(os.path.islink(link))
        np.testing.assert_array_equal(
            mh.io.load(os.path.join(self.dir, "new.npz"))["~/w"], np.ones(2))

    def test_file_and_directory_are_fsynced(self):
        with mock.patch.object(os, "fsync", wraps=os.fsync) as fsync:
            mh.io.save(self.path, _tree())
        self.assertGreaterEqual(fsync.call_count, 2)

    def test_overwrite_keeps_the_file_mode(self):
        mh.io.save(self.path, _tree())
        os.chmod(self.path, 0o600)
        mh.io.save(self.path, {"~/w": np.ones(1)})
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    @parameterized.parameters(0o027, 0o002)
    def test_new_file_mode_follows_the_umask_without_touching_it(self, umask):
        out = _run_python(f"""
            import os
            calls = []
            real_umask = os.umask
            os.umask = lambda m: calls.append(m) or real_umask(m)
            import numpy as np
            import minihaiku as mh
            mh.io.save({self.path!r}, {{"~/w": np.ones(2)}})
            print(oct(os.stat({self.path!r}).st_mode & 0o777), len(calls))
            """, umask=umask)
        self.assertEqual(out.split(), [oct(0o666 & ~umask), "0"])


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
        with patch, self.assertRaisesRegex(OSError, "simulated") as cm:
            mh.io.save(self.path, _tree())
        self.assertIn(self.path, str(cm.exception))
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

    def test_killed_process_mid_write_keeps_old_file(self):
        mh.io.save(self.path, {"~/w": np.zeros(2)})
        # A child killed by SIGKILL while writing: no cleanup code runs at all.
        code = textwrap.dedent(f"""
            import os, signal
            import numpy as np
            from minihaiku import io
            real = io._write_entry
            def write_then_die(zf, key, value):
                real(zf, key, value)
                if key == "1":
                    os.kill(os.getpid(), signal.SIGKILL)
            io._write_entry = write_then_die
            io.save({self.path!r}, {{"~/a": np.ones(2), "~/b": np.ones(9)}})
            """)
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ,
                              "PYTHONPATH": _REPO}, capture_output=True, timeout=300,
                              check=False)
        self.assertEqual(proc.returncode, -9)
        np.testing.assert_array_equal(mh.io.load(self.path)["~/w"], np.zeros(2))
        # Only a stray temporary file can remain, never a half target.
        leftovers = [n for n in os.listdir(self.dir) if n != "ckpt.npz"]
        self.assertTrue(all(n.startswith(".mh-") for n in leftovers), leftovers)


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
        with self.assertRaisesRegex(mh.CheckpointError, "truncated or corrupt"):
            mh.io.load(path)

    def test_flipped_data_byte_is_a_clear_error(self):
        data = bytearray(self.good)
        w = _tree()["~/Linear_0/__call__/w"].tobytes()
        at = bytes(data).index(w) + 5
        data[at] ^= 0xFF
        with self.assertRaisesRegex(mh.CheckpointError, "truncated or corrupt"):
            mh.io.load(self._write(bytes(data)))

    @parameterized.named_parameters(
        ("shape", '"entries": [["[\'w\']", "float32", [9]]], "tree": {"dict": [["w", 0]]}',
         r"\['w'\] is float32\(3,\) but the header says float32\(9,\)"),
        ("tree_uses_missing_entry", '"entries": [["[\'w\']", "float32", [3]]], '
         '"tree": {"dict": [["w", 1]]}', "bad tree node 1"),
        ("tree_skips_an_entry", '"entries": [["[\'w\']", "float32", [3]]], '
         '"tree": {"dict": []}', "uses 0 of 1 entries"),
        ("no_entries_key", '"tree": null', "malformed"),
    )
    def test_header_disagreeing_with_data_is_corrupt(self, body, message):
        path = os.path.join(self.dir, "lying.npz")
        header = ('{"format": "minihaiku.io", "version": 2, ' + body + '}').encode()
        with zipfile.ZipFile(path, "w") as zf:
            with zf.open("__minihaiku__.npy", "w") as f:
                np.lib.format.write_array(f, np.frombuffer(header, np.uint8))
            with zf.open("0.npy", "w") as f:
                np.lib.format.write_array(f, np.zeros(3, np.float32))
        with self.assertRaisesRegex(mh.CheckpointError, message):
            mh.io.load(path)

    def test_newer_version_is_refused(self):
        path = os.path.join(self.dir, "future.npz")
        header = b'{"format": "minihaiku.io", "version": 3, "entries": [], "tree": null}'
        with zipfile.ZipFile(path, "w") as zf:
            with zf.open("__minihaiku__.npy", "w") as f:
                np.lib.format.write_array(f, np.frombuffer(header, np.uint8))
        with self.assertRaisesRegex(mh.CheckpointError, "format version 3.*upgrade"):
            mh.io.load(path)

    def test_foreign_npz_is_refused(self):
        path = os.path.join(self.dir, "foreign.npz")
        np.savez(path, w=np.ones(3))
        with self.assertRaisesRegex(mh.CheckpointError, "not written by mh.io.save"):
            mh.io.load(path)

    @parameterized.named_parameters(
        ("npy", None), ("text", b"hello, world\n"), ("empty", b""))
    def test_non_npz_file_is_refused(self, data):
        if data is None:
            path = os.path.join(self.dir, "array.npy")
            np.save(path, np.ones(3))
        else:
            path = self._write(data)
        with self.assertRaisesRegex(mh.CheckpointError, "not written by mh.io.save"):
            mh.io.load(path)

    def test_missing_file(self):
        path = os.path.join(self.dir, "nope.npz")
        with self.assertRaisesRegex(mh.CheckpointNotFoundError, "no file at .*nope.npz") as cm:
            mh.io.load(path)
        self.assertIsInstance(cm.exception, FileNotFoundError)
        with self.assertRaises(mh.CheckpointNotFoundError):
            mh.io.load_partial(path, like={})


@absltest.skipIf(sys.version_info < (3, 11), "orbax-checkpoint needs Python >= 3.11")
class OrbaxTest(absltest.TestCase):
    """Params are plain dicts of arrays, so orbax-checkpoint takes them as they are."""

    def test_params_and_train_state_round_trip(self):
        import orbax.checkpoint as ocp

        f = mh.transform(lambda x: mh.nn.Linear(3)(mh.nn.LayerNorm(-1, True, True)(x)))
        params = f.init(jax.random.PRNGKey(0), jnp.ones((2, 4)))
        state = {"params": params, "opt_state": optax.adamw(1e-3).init(params),
                 "step": jnp.asarray(5)}
        path = os.path.join(_tempdir(self), "orbax")
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(path, state)
            checkpointer.wait_until_finished()
            restored = checkpointer.restore(path, jax.eval_shape(lambda: state))
        self.assertEqual(set(restored["params"]), set(state["params"]))
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
            self.assertEqual(got.dtype, want.dtype)
            np.testing.assert_array_equal(got, want)
        x = jnp.arange(8.0).reshape(2, 4)
        np.testing.assert_array_equal(f.apply(restored["params"], None, x),
                                      f.apply(params, None, x))

    def test_sharded_params_over_two_devices(self):
        out = _run_python(f"""
            import os
            import jax, jax.numpy as jnp, numpy as np
            import orbax.checkpoint as ocp
            from jax.sharding import NamedSharding, PartitionSpec as P
            import minihaiku as mh
            assert jax.device_count() == 2, jax.devices()
            f = mh.transform(lambda x: mh.nn.Linear(4)(mh.nn.Linear(8)(x)))
            params = f.init(jax.random.PRNGKey(0), jnp.ones((2, 6)))
            mesh = jax.make_mesh((2,), ("model",))
            spec = lambda v: P(None, "model") if v.ndim == 2 else P("model")
            sharded = jax.device_put(
                params, {{k: NamedSharding(mesh, spec(v)) for k, v in params.items()}})
            path = os.path.join({_tempdir(self)!r}, "ckpt")
            with ocp.StandardCheckpointer() as checkpointer:
                checkpointer.save(path, sharded)
                checkpointer.wait_until_finished()
                like = jax.tree.map(
                    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                    sharded)
                restored = checkpointer.restore(path, like)
            for k, v in params.items():
                assert restored[k].sharding == sharded[k].sharding, k
                assert len(restored[k].addressable_shards) == 2, k
                np.testing.assert_array_equal(restored[k], v)
            # mh.io gathers fully addressable sharded arrays into one file.
            mh.io.save(path + ".npz", sharded)
            loaded = mh.io.load(path + ".npz", like=params)
            assert all(np.array_equal(loaded[k], params[k]) for k in params)
            print("ok", len(params))
            """, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
        self.assertEqual(out.split(), ["ok", "4"])


class GuideTest(absltest.TestCase):

    def test_docstring_examples_run(self):
        result = doctest.testmod(mh_io, extraglobs={"mh": mh, "jax": jax, "jnp": jnp})
        self.assertEqual(result.failed, 0)
        self.assertGreaterEqual(result.attempted, 8)

    def test_io_guide_code_blocks_run(self):
        with open(os.path.join(_REPO, "docs", "guides", "io.md")) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertGreaterEqual(len(blocks), 8)
        namespace: dict = {}
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/guides/io.md block {i}", "exec"), namespace)  # noqa: S102


if __name__ == "__main__":
    absltest.main()
