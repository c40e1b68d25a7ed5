"""Tests for mh.summary."""

import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.sharding import PartitionSpec as P

import minihaiku as mh

# `mh.summary` is the function; the module it lives in:
summary_lib = importlib.import_module("minihaiku._summary")


class Dense(mh.Module):

    def __init__(self, size, dtype=jnp.float32, name=None):
        super().__init__(name=name)
        self.size = size
        self.dtype = dtype

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size), self.dtype)
        b = mh.get_param("b", (self.size,), self.dtype, init=jax.nn.initializers.zeros)
        return x @ w.astype(x.dtype) + b.astype(x.dtype)


class Embed(mh.Module):
    """Two methods sharing one param, plus a param of its own per method."""

    def embeddings(self):
        return mh.get_param("table", (7, 4))

    def __call__(self, ids):
        return self.embeddings()[ids] * mh.get_param("scale", ())

    def attend(self, x):
        return x @ self.embeddings().T + mh.get_param("bias", (7,))


def _net(x):
    h = jax.nn.sigmoid(Dense(5)(x))
    return Dense(2, jnp.bfloat16, name="head")(h)


def _counting_net(x, is_training):
    count = mh.get_state("count", (), jnp.int32, init=jnp.zeros)
    mh.set_state("count", count + 1)
    y = Dense(3)(x)
    return y * 0.5 if is_training else y


def _rows(table: str) -> list:
    """Data rows of the table as dicts, cut at the columns the dashes mark."""
    lines = table.splitlines()
    spans, start = [], 0
    for dashes in lines[1].split("  "):
        spans.append((start, start + len(dashes)))
        start += len(dashes) + 2
    header = [lines[0][a:b].strip() for a, b in spans]
    rows, last = [], {}
    for line in lines[2:]:
        if line.startswith("Total"):
            break
        row = dict(zip(header, (line[a:b].strip() for a, b in spans), strict=True))
        if not row["Module"]:  # A blank module and method: same group as above.
            row["Module"], row["Method"] = last["Module"], last["Method"]
        rows.append(row)
        last = row
    return rows


class SummaryTest(parameterized.TestCase):

    def test_rows_match_the_params_init_creates(self):
        f = mh.transform(_net)
        x = jnp.ones((4, 3))
        params = f.init(jax.random.PRNGKey(0), x)  # The reference: real params.
        table = mh.summary(f, x)
        rows = _rows(table)
        self.assertLen(rows, len(params))
        for row in rows:
            path = f"{row['Module']}/{row['Method']}/{row['Name']}"
            value = params[path]
            self.assertEqual(row["Shape"], str(value.shape))
            self.assertEqual(row["Dtype"], value.dtype.name)
            self.assertEqual(int(row["Count"].replace(",", "")), value.size)
            self.assertEqual(row["Bytes"], f"{value.nbytes} B")
        total = sum(v.size for v in params.values())
        nbytes = sum(v.nbytes for v in params.values())
        self.assertIn(f"Total params: {total} ({nbytes} B) in 4 arrays", table)
        self.assertNotIn("Kind", table)  # No state: no Kind column.

    def test_paths_split_into_module_method_and_name(self):
        table = mh.summary(mh.transform(_net), jnp.ones((4, 3)))
        rows = _rows(table)
        self.assertEqual(
            [(r["Module"], r["Method"], r["Name"]) for r in rows],
            [("~/Dense_0", "__call__", "w"), ("~/Dense_0", "__call__", "b"),
             ("~/head_0", "__call__", "w"), ("~/head_0", "__call__", "b")])

    @parameterized.parameters(
        ("~/MLP_0/__call__/Linear_0/__call__/w", ("~/MLP_0/__call__/Linear_0", "__call__", "w")),
        ("~/Embed_0/attend/bias", ("~/Embed_0", "attend", "bias")),
        ("~/w", ("~", "", "w")),
    )
    def test_split_path(self, path, expected):
        self.assertEqual(summary_lib._split_path(path), expected)

    def test_groups_by_method_in_creation_order(self):
        def f(ids):
            embed = Embed()
            return embed.attend(embed(ids))

        table = mh.summary(f, jnp.zeros((2,), jnp.int32))
        rows = _rows(table)
        self.assertEqual([(r["Method"], r["Name"]) for r in rows],
                         [("embeddings", "table"), ("__call__", "scale"),
                          ("attend", "bias")])
        # Second and later rows of a group leave module and method blank.
        lines = table.splitlines()
        self.assertTrue(lines[2].startswith("~/Embed_0  embeddings"))

    def test_bfloat16_bytes_and_units(self):
        f = mh.transform(lambda x: Dense(1000, jnp.bfloat16)(x))
        table = mh.summary(f, jax.ShapeDtypeStruct((1, 512), jnp.float32))
        row = _rows(table)[0]
        self.assertEqual(row["Count"], "512,000")
        self.assertEqual(row["Bytes"], "1000.0 KiB")  # 512,000 * 2 bytes.
        self.assertIn("Total params: 513,000 (1002.0 KiB) in 2 arrays", table)

    @parameterized.parameters("transform_with_state", "plain")
    def test_state_rows_and_static_args(self, how):
        f = _counting_net if how == "plain" else mh.transform_with_state(_counting_net)
        table = mh.summary(f, jnp.ones((2, 6)), True)
        rows = _rows(table)
        self.assertEqual([(r["Name"], r["Kind"]) for r in rows],
                         [("w", "param"), ("b", "param"), ("count", "state")])
        self.assertEqual(rows[2]["Module"], "~")
        self.assertIn("Total params: 21 (84 B) in 2 arrays", table)
        self.assertIn("Total state: 1 (4 B) in 1 array", table)

    def test_keyword_arguments(self):
        table = mh.summary(_counting_net, x=jnp.ones((2, 6)), is_training=False)
        self.assertIn("Total params: 21", table)

    def test_nothing_is_computed(self):
        calls = []

        def f(x):
            jax.debug.callback(lambda: calls.append(1))
            return Dense(100_000)(Dense(100_000)(x))

        start = time.perf_counter()
        table = mh.summary(f, jax.ShapeDtypeStruct((8, 100_000), jnp.float32))
        self.assertLess(time.perf_counter() - start, 10.0)
        self.assertEqual(calls, [])  # The network never ran.
        # 2 * (1e10 + 1e5) params of 4 bytes: far more than memory holds.
        self.assertIn("Total params: 20,000,200,000 (74.5 GiB) in 4 arrays", table)
        # Sanity check of the callback: running init does call it.
        mh.transform(lambda x: (jax.debug.callback(lambda: calls.append(1)), x)).init(
            None, jnp.ones(()))
        self.assertEqual(calls, [1])

    def test_no_params(self):
        table = mh.summary(lambda x: x * 2, np.ones(3))
        self.assertIn("Total params: 0 (0 B) in 0 arrays", table)

    def test_typed_prng_key_in_state(self):
        def f(x):
            mh.set_state("key", jax.random.key(0))
            return Dense(2)(x)

        table = mh.summary(f, jnp.ones((1, 3)))
        row = [r for r in _rows(table) if r["Name"] == "key"][0]
        self.assertEqual((row["Kind"], row["Shape"], row["Count"]), ("state", "()", "1"))
        self.assertEqual(row["Dtype"], str(jax.random.key(0).dtype))
        nbytes = jax.random.key_data(jax.random.key(0)).nbytes  # 2 x uint32.
        self.assertEqual(row["Bytes"], f"{nbytes} B")
        self.assertIn(f"Total state: 1 ({nbytes} B) in 1 array", table)

    @parameterized.parameters(3, "f", None)
    def test_non_callable_first_argument(self, f):
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    f"first argument.*got {type(f).__name__}"):
            mh.summary(f, jnp.ones(2))

    def test_rules_need_a_mesh(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "without a mesh"):
            mh.summary(_net, jnp.ones((4, 3)), rules=[])

    def test_per_device_columns_on_a_mesh(self):
        # One device here: per-device bytes equal the bytes; tests/sharding_devices.py
        # checks them on 8 devices against the shards init creates.
        mesh = mh.sharding.mesh("data:1,model:1")
        rules = [(r"Dense_0/.*/w$", P(None, "model"))]
        table = mh.summary(_net, jnp.ones((4, 3)), mesh=mesh, rules=rules)
        rows = _rows(table)
        self.assertEqual([r["Spec"] for r in rows],
                         ["(None, 'model')", "()", "()", "()"])
        self.assertEqual([r["Per device"] for r in rows], [r["Bytes"] for r in rows])
        self.assertIn("Total params: 32 (104 B) in 4 arrays, 104 B per device", table)
        self.assertNotIn("Spec", mh.summary(_net, jnp.ones((4, 3))))
        with self.assertRaisesRegex(mh.ShardingError, "no axis"):
            mh.summary(_net, jnp.ones((4, 3)), mesh=mesh, rules=[("w", P("x"))])

    def test_wrong_inputs_raise_as_init_would(self):
        with self.assertRaises(TypeError):
            mh.summary(mh.transform(_net), jnp.ones((4, 3)), jnp.ones(2))


if __name__ == "__main__":
    absltest.main()
