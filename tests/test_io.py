"""Tests for mh.io.save / mh.io.load / mh.io.load_partial: trees, dtypes, formats."""

import json
import os
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
from absl.testing import absltest, parameterized

import minihaiku as mh
from io_testing import REPO as _REPO
from io_testing import assert_trees_identical as _assert_trees_identical
from io_testing import linear as _linear
from io_testing import tempdir as _tempdir
from io_testing import tree as _tree

_V1_FIXTURE = os.path.join(_REPO, "tests", "testdata", "io_v1_params.npz")

# Every non-native dtype jnp knows: all stored as raw bits.
_ML_DTYPES = ["bfloat16", "float8_e3m4", "float8_e4m3", "float8_e4m3b11fnuz", "float8_e4m3fn",
              "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
              "float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "int2", "int4", "uint2",
              "uint4"]
_NOT_ON_XLA_CPU = ["float6_e2m3fn", "float6_e3m2fn"]  # jnp knows them, XLA:CPU does not.
_NATIVE_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "uint64", "float16", "float32", "float64", "complex64", "complex128"]


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


if __name__ == "__main__":
    absltest.main()
