"""mh.sharding on 8 host CPU devices; run by test_sharding.py in a subprocess.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before JAX
starts, so these tests cannot run in the default (1-device) test process.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import minihaiku as mh
import sharding_model as m

_CONFIGS = {
    "fsdp": ("data:8", m.FSDP_RULES, False),
    "tp": ("data:2,model:4", m.TP_RULES, False),
    "logical": ("data:2,model:4", m.LOGICAL_RULES, True),
}


def _expected_shard_shape(shape, spec, mesh):
    """Each dim divided by the mesh sizes its spec entry names (by hand)."""
    out = []
    spec = tuple(spec) + (None,) * (len(shape) - len(spec))  # P(): replicated.
    for dim, entry in zip(shape, spec, strict=True):
        names = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        out.append(dim // int(np.prod([mesh.shape[n] for n in names])))
    return tuple(out)


class ShardedInitTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.assertEqual(jax.device_count(), 8, "run with 8 host devices")
        self.tokens = m.batches(1)[0][:, :-1]

    @parameterized.parameters(("fsdp", True), ("fsdp", False), ("tp", True),
                              ("logical", False))
    def test_equals_unsharded_init_bit_for_bit_with_the_requested_shardings(
            self, config, stacked):
        axes, rules, annotated = _CONFIGS[config]
        mesh = mh.sharding.mesh(axes)
        model = m.make_model(stacked, annotated)
        sharded = mh.sharding.init(model.init, rules, mesh)(jax.random.key(0), self.tokens)
        # The reference is the same init, jitted unsharded: eager and jitted
        # initializers may differ by an ulp (XLA folds their constants).
        plain = jax.jit(model.init)(jax.random.key(0), self.tokens)
        # Creation order, as the unsharded init gives (jit's output dict is sorted).
        self.assertEqual(list(sharded), list(model.init(jax.random.key(0), self.tokens)))
        self.assertEqual(set(sharded), set(plain))
        axes = mh.sharding.logical_axes(model.init, jax.random.key(0), self.tokens)
        specs = mh.sharding.specs(plain, rules, axes=axes)
        sharded_dims = 0
        for path, value in sharded.items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(plain[path]),
                                          err_msg=path)
            want = NamedSharding(mesh, specs[path])
            self.assertTrue(value.sharding.is_equivalent_to(want, value.ndim),
                            f"{path}: {value.sharding} != {want}")
            shard = _expected_shard_shape(value.shape, specs[path], mesh)
            for piece in value.addressable_shards:
                self.assertEqual(piece.data.shape, shard, path)
            sharded_dims += shard != value.shape
        self.assertGreater(sharded_dims, 5)  # The rules really shard.

    def test_int_seed_and_state_follow_the_rules(self):
        def f(x):
            cache = mh.get_state("cache", (8, 4), init=jnp.ones)
            mh.set_state("cache", cache + x.sum())
            mh.set_state("key", jax.random.key(1))
            return mh.nn.Linear(8)(x)

        mesh = mh.sharding.mesh("data:8")
        model = mh.transform_with_state(f)
        x = jnp.ones((2, 8))
        rules = [(r"cache$", P("data", None)), (r"/w$", P(None, "data"))]
        params, state = mh.sharding.init(model.init, rules, mesh)(0, x)
        ref_params, ref_state = jax.jit(model.init, static_argnums=0)(0, x)
        np.testing.assert_array_equal(params["~/Linear_0/__call__/w"],
                                      ref_params["~/Linear_0/__call__/w"])
        np.testing.assert_array_equal(state["~/cache"], ref_state["~/cache"])
        self.assertEqual(state["~/cache"].addressable_shards[0].data.shape, (1, 4))
        self.assertEqual(params["~/Linear_0/__call__/w"].addressable_shards[0].data.shape,
                         (8, 1))
        self.assertTrue(state["~/key"].sharding.is_fully_replicated)


class MeshErrorsTest(absltest.TestCase):

    def test_dimension_not_divided_by_the_mesh_axis(self):
        mesh = mh.sharding.mesh("data:8")
        tree = {"~/Linear_0/__call__/w": jax.ShapeDtypeStruct((3, 12), jnp.float32)}
        with self.assertRaisesRegex(mh.ShardingError,
                                    r"~/Linear_0/__call__/w.*\(3, 12\).*'data': 8.*"
                                    r"12 does not split into 8"):
            mh.sharding.shardings(tree, [(r"/w$", P("data"))], mesh)

    def test_product_of_axes_must_divide(self):
        mesh = mh.sharding.mesh("data:2,model:4")
        tree = {"~/w": jax.ShapeDtypeStruct((4, 4), jnp.float32)}
        with self.assertRaisesRegex(mh.ShardingError, r"split into 8"):
            mh.sharding.shardings(tree, [(r"w", P(("data", "model"), None))], mesh)
        out = mh.sharding.shardings(tree, [(r"w", P(None, ("data", "model")))],
                                    mh.sharding.mesh("data:1,model:4",
                                                     devices=jax.devices()[:4]))
        self.assertEqual(out["~/w"].shard_shape((4, 4)), (4, 1))

    def test_axis_the_mesh_lacks(self):
        mesh = mh.sharding.mesh("data:8")
        tree = {"~/head_0/__call__/w": jnp.zeros((16, 32))}
        with self.assertRaisesRegex(mh.ShardingError,
                                    r"~/head_0/__call__/w.*\(16, 32\).*no axis \['model'\]"):
            mh.sharding.shardings(tree, m.TP_RULES, mesh)

    def test_init_reports_the_path_before_running(self):
        mesh = mh.sharding.mesh("data:8")
        model = m.make_model()
        init = mh.sharding.init(model.init, [(r"ln_final.*scale$", P(None, "data"))], mesh)
        with self.assertRaisesRegex(mh.ShardingError, re.escape("~/ln_final_0/__call__/scale")):
            init(0, m.batches(1)[0][:, :-1])


class TrainStepTest(parameterized.TestCase):

    @parameterized.parameters("fsdp", "tp", "logical")
    def test_20_sharded_steps_equal_the_one_device_steps(self, config):
        axes, rules, annotated = _CONFIGS[config]
        mesh = mh.sharding.mesh(axes)
        model = m.make_model(True, annotated)
        data = m.batches(20)
        params = model.init(jax.random.key(0), data[0][:, :-1])
        one_device = m.make_train_step(model.apply)
        for tokens in data:
            params = one_device(params, tokens)
        shardings = mh.sharding.shardings(
            params, rules, mesh,
            axes=mh.sharding.logical_axes(model.init, 0, data[0][:, :-1]))
        batch_sharding = NamedSharding(mesh, P("data"))
        step = m.make_train_step(model.apply, shardings, batch_sharding)
        sharded = mh.sharding.init(model.init, rules, mesh)(jax.random.key(0), data[0][:, :-1])
        for tokens in data:
            sharded = step(sharded, jax.device_put(tokens, batch_sharding))
        diff = max(float(jnp.max(jnp.abs(sharded[k] - params[k]))) for k in params)
        print(f"{config}: max |8 devices - 1 device| after 20 steps = {diff:.3g}")
        self.assertLess(diff, 1e-5)
        moved = max(float(jnp.max(jnp.abs(params[k] - v))) for k, v in
                    model.init(jax.random.key(0), data[0][:, :-1]).items())
        self.assertGreater(moved, 1e-2)  # Training did change the params.
        for path, value in sharded.items():
            self.assertTrue(value.sharding.is_equivalent_to(shardings[path], value.ndim))


class SummaryTest(absltest.TestCase):

    def test_per_device_bytes_match_the_shards_init_creates(self):
        mesh = mh.sharding.mesh("data:2,model:4")
        model = m.make_model(True, True)
        tokens = m.batches(1)[0][:, :-1]
        params = mh.sharding.init(model.init, m.LOGICAL_RULES, mesh)(0, tokens)
        per_device = sum(v.addressable_shards[0].data.nbytes for v in params.values())
        total = sum(v.nbytes for v in params.values())
        table = mh.summary(model, tokens, mesh=mesh, rules=m.LOGICAL_RULES)
        self.assertLess(per_device, total)
        line = [ln for ln in table.splitlines() if ln.startswith("Total params")][0]
        self.assertTrue(line.endswith(f", {_fmt(per_device)} per device"), (line, per_device))
        w_in = [ln for ln in table.splitlines() if " w_in " in ln][0]
        self.assertIn("(None, None, 'model')", w_in)
        self.assertIn(_fmt(params["~/Mlp_0/__call__/w_in"].addressable_shards[0].data.nbytes),
                      w_in)


def _fmt(n):
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


if __name__ == "__main__":
    absltest.main()
