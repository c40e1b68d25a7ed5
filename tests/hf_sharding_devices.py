"""mh.interop.load_hf onto 8 host CPU devices; run by test_interop_hf.py in a subprocess.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before JAX
starts, so this cannot run in the default (1-device) test process.
"""

import pathlib

import jax
import numpy as np
from absl.testing import absltest, parameterized
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import minihaiku as mh
from minihaiku import interop, nets

_DATA = pathlib.Path(__file__).resolve().parent / "testdata" / "hf"

# Tensor parallel over "model", the token table split over "data".
_RULES = [
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)_0/__call__/w$", P(None, "model")),
    (r"(o_proj|down_proj)_0/__call__/w$", P("model", None)),
    (r"lm_head_0/__call__/w$", P(None, "model")),
    (r"embed_tokens$", P("data", None)),
]


class ShardedLoadTest(parameterized.TestCase):

    @parameterized.parameters(False, True)
    def test_each_param_lands_on_its_sharding_with_the_same_values(self, scan_layers):
        self.assertEqual(jax.device_count(), 8, "run with 8 host devices")
        mesh = mh.sharding.mesh("data:2,model:4")
        config, params = interop.load_hf(_DATA / "llama_gqa", mesh=mesh, rules=_RULES,
                                         scan_layers=scan_layers)
        _, plain = interop.load_hf(_DATA / "llama_gqa", scan_layers=scan_layers)
        specs = mh.sharding.specs(plain, _RULES)
        sharded = 0
        for path, value in params.items():
            want = NamedSharding(mesh, specs[path])
            self.assertTrue(value.sharding.is_equivalent_to(want, value.ndim),
                            f"{path}: {value.sharding} != {want}")
            sharded += specs[path] != P()
            for shard in value.addressable_shards:
                np.testing.assert_array_equal(shard.data, np.asarray(plain[path])[shard.index])
        self.assertEqual(sharded, 1 + 7 * (1 if scan_layers else 2) + 1)  # table, blocks, head
        tokens = np.load(_DATA / "llama_gqa" / "expected.npz")["tokens"]
        f = mh.transform(lambda t: nets.Llama(config)(t))
        np.testing.assert_allclose(jax.jit(f.apply)(params, None, tokens),
                                   f.apply(plain, None, tokens), atol=1e-5)

    def test_replicated_without_rules(self):
        mesh = mh.sharding.mesh("data:8")
        _, params = interop.load_hf(_DATA / "gpt2", mesh=mesh)
        for value in params.values():
            self.assertTrue(value.sharding.is_fully_replicated)
            self.assertEqual(len(value.sharding.device_set), 8)

    def test_a_rule_that_does_not_divide_is_refused_before_loading(self):
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:3]), ("model",))
        with self.assertRaisesRegex(mh.ShardingError, "k_proj.*8 does not split into 3"):
            interop.load_hf(_DATA / "qwen2_tied_sharded", mesh=mesh,
                            rules=[(r"k_proj_0/__call__/w$", P(None, "model"))])


if __name__ == "__main__":
    absltest.main()
