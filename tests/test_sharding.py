"""Tests for mh.sharding.

The rules, specs and errors run here on one device (specs need no devices).
What needs a real mesh runs in subprocesses with more host devices (XLA_FLAGS
must be set before JAX starts): ``sharding_devices.py`` on 8 devices (sharded
init, train step, mesh errors, per-device summary), and, marked slow,
``sharding_multihost.py`` as 2 processes of 4 devices joined over 127.0.0.1.
"""

import pathlib
import re
import socket
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized
from jax.sharding import PartitionSpec as P

import minihaiku as mh
import sharding_model as m
from helpers.subprocess_env import subprocess_env

_TESTS = pathlib.Path(__file__).resolve().parent
_ROOT = _TESTS.parent
_TOKENS = m.batches(1)[0][:, :-1]

_BLOCK = ["ln_att_0/__call__/scale", "ln_att_0/__call__/offset",
          "q_0/__call__/w", "q_0/__call__/b", "k_0/__call__/w", "k_0/__call__/b",
          "v_0/__call__/w", "v_0/__call__/b", "o_0/__call__/w", "o_0/__call__/b",
          "ln_mlp_0/__call__/scale", "ln_mlp_0/__call__/offset",
          "up_0/__call__/w", "up_0/__call__/b", "down_0/__call__/w", "down_0/__call__/b"]

# The specs of the unstacked block, written out by hand.
_TP_BLOCK = {"q_0/__call__/w": (None, "model"), "q_0/__call__/b": ("model",),
             "k_0/__call__/w": (None, "model"), "k_0/__call__/b": ("model",),
             "v_0/__call__/w": (None, "model"), "v_0/__call__/b": ("model",),
             "o_0/__call__/w": ("model", None),
             "up_0/__call__/w": (None, "model"), "up_0/__call__/b": ("model",),
             "down_0/__call__/w": ("model", None)}
_FSDP_BLOCK = {k: ("data", None) if k.endswith("/w") else ("data",)
               for k in _BLOCK if k.endswith(("/w", "/b"))}


def _shapes(stacked=True, annotated=False):
    model = m.make_model(stacked, annotated)
    return jax.eval_shape(model.init, jax.random.key(0), _TOKENS)


def _one_device_mesh(names=("data", "model")):
    return mh.sharding.mesh({n: 1 for n in names})


class SpecsTest(parameterized.TestCase):

    def test_tensor_parallel_specs_of_the_stacked_transformer(self):
        specs = mh.sharding.specs(_shapes(stacked=True), m.TP_RULES)
        want = {"~/Embed_0/embeddings/embeddings": P(None, "model"),
                "~/ln_final_0/__call__/scale": P(), "~/ln_final_0/__call__/offset": P(),
                "~/head_0/__call__/w": P(None, "model"), "~/head_0/__call__/b": P("model")}
        for name in _BLOCK:  # The stack's leading layer axis stays unsharded.
            spec = _TP_BLOCK.get(name)
            want[f"~/{name}"] = P() if spec is None else P(None, *spec)
        self.assertEqual(specs, want)

    def test_tensor_parallel_specs_of_the_unstacked_transformer(self):
        params = m.make_model(stacked=False).init(jax.random.key(0), _TOKENS)
        specs = mh.sharding.specs(params, m.TP_RULES)
        self.assertLen(specs, len(params))
        for layer in range(m.LAYERS):
            for name in _BLOCK:
                spec = _TP_BLOCK.get(name)
                path = "~/" + name.replace("_0/", f"_{layer}/")
                self.assertEqual(specs[path], P() if spec is None else P(*spec), path)

    def test_fsdp_specs_of_the_stacked_transformer(self):
        specs = mh.sharding.specs(_shapes(stacked=True), m.FSDP_RULES)
        self.assertEqual(specs["~/Embed_0/embeddings/embeddings"], P("data", None))
        self.assertEqual(specs["~/head_0/__call__/w"], P("data", None))
        self.assertEqual(specs["~/head_0/__call__/b"], P("data"))
        self.assertEqual(specs["~/ln_final_0/__call__/scale"], P())
        for name in _BLOCK:
            spec = _FSDP_BLOCK.get(name)
            self.assertEqual(specs[f"~/{name}"], P() if spec is None else P(None, *spec))

    def test_first_matching_rule_wins_and_regex_is_searched(self):
        tree = {"~/a_0/__call__/w": jnp.zeros((4, 4)), "~/b_0/__call__/w": jnp.zeros((4, 4)),
                "~/c_0/__call__/w": jnp.zeros((4, 4))}
        rules = [(r"a_0", P("x")), (r"_0/__call__/w$", P(None, "y")), (r"a_0", P("z"))]
        self.assertEqual(mh.sharding.specs(tree, rules),
                         {"~/a_0/__call__/w": P(None, "x"), "~/b_0/__call__/w": P(None, "y"),
                          "~/c_0/__call__/w": P(None, "y")})
        self.assertEqual(mh.sharding.specs(tree, []), {k: P() for k in tree})

    def test_compiled_patterns_tuples_and_multi_axis_entries(self):
        tree = {"~/w": jnp.zeros((2, 8, 6))}
        specs = mh.sharding.specs(tree, [(re.compile("w"), (("data", "model"), None))])
        self.assertEqual(specs["~/w"], P(None, ("data", "model"), None))

    def test_spec_longer_than_the_rank_names_path_and_shape(self):
        tree = {"~/ln_0/__call__/scale": jax.ShapeDtypeStruct((16,), jnp.float32)}
        with self.assertRaisesRegex(mh.ShardingError,
                                    r"'~/ln_0/__call__/scale' of shape \(16,\) \(rank 1\)"):
            mh.sharding.specs(tree, [(r"scale", P("data", None))])

    @parameterized.parameters(
        ({"a": P()},), ("a",), ([("a",)],), ([(1, P())],), ([("a", "b")],),
        ([("(", P())],),
    )
    def test_malformed_rules(self, rules):
        with self.assertRaises(mh.InvalidArgumentError):
            mh.sharding.specs({"~/w": jnp.zeros(2)}, rules)

    def test_entry_that_is_not_an_array(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"'~/w' is a list"):
            mh.sharding.specs({"~/w": [1, 2]}, [])


class LogicalAxesTest(parameterized.TestCase):

    def test_axes_are_collected_with_the_unstacked_rank(self):
        model = m.make_model(stacked=True, annotated=True)
        axes = mh.sharding.logical_axes(model.init, jax.random.key(0), _TOKENS)
        self.assertEqual(axes, {"~/Mlp_0/__call__/w_in": ("embed", "mlp"),
                                "~/Mlp_0/__call__/b_in": ("mlp",),
                                "~/Mlp_0/__call__/w_out": ("mlp", "embed")})
        specs = mh.sharding.specs(_shapes(True, True), m.LOGICAL_RULES, axes=axes)
        self.assertEqual(specs["~/Mlp_0/__call__/w_in"], P(None, None, "model"))
        self.assertEqual(specs["~/Mlp_0/__call__/b_in"], P(None, "model"))
        self.assertEqual(specs["~/Mlp_0/__call__/w_out"], P(None, "model", None))
        self.assertEqual(specs["~/q_0/__call__/w"], P(None, None, "model"))  # By regex.

    def test_regex_rule_before_the_logical_rules_wins(self):
        model = m.make_model(stacked=False, annotated=True)
        params = model.init(jax.random.key(0), _TOKENS)
        axes = mh.sharding.logical_axes(model.init, jax.random.key(0), _TOKENS)
        rules = [(r"Mlp_1/.*w_in$", P("data", None)),
                 mh.sharding.logical_rules([("embed", "data"), ("mlp", None)])]
        specs = mh.sharding.specs(params, rules, axes=axes)
        self.assertEqual(specs["~/Mlp_1/__call__/w_in"], P("data", None))
        self.assertEqual(specs["~/Mlp_0/__call__/w_in"], P("data", None))
        self.assertEqual(specs["~/Mlp_0/__call__/w_out"], P(None, "data"))
        self.assertEqual(specs["~/q_0/__call__/w"], P())

    def test_no_collector_outside_mh_sharding_and_nothing_in_init_output(self):
        model = m.make_model(stacked=False, annotated=True)
        params = model.init(jax.random.key(0), _TOKENS)
        self.assertTrue(all(isinstance(v, jax.Array) for v in params.values()))
        out = model.apply(params, _TOKENS)  # Apply never checks nor records axes.
        self.assertEqual(out.shape, (m.BATCH, m.SEQ, m.VOCAB))
        self.assertEqual(mh.sharding.logical_axes(mh.transform(lambda: 0).init, None), {})

    def test_logical_rules_without_axes(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"logical_axes"):
            mh.sharding.specs(_shapes(), m.LOGICAL_RULES)

    def test_unmapped_logical_name(self):
        axes = {"~/w": ("embed", "heads")}
        rules = [mh.sharding.logical_rules({"embed": None})]
        with self.assertRaisesRegex(mh.ShardingError, r"'~/w'.*\['heads'\]"):
            mh.sharding.specs({"~/w": jnp.zeros((2, 2))}, rules, axes=axes)

    @parameterized.parameters((("embed",),), (("embed", "mlp", "x"),), ("em",),
                              (("embed", 3),))
    def test_get_param_axes_must_name_every_dimension(self, axes):
        f = mh.transform(lambda: mh.get_param("w", (2, 3), axes=axes))
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"'~/w' of shape \(2, 3\)"):
            f.init(jax.random.key(0))

    @parameterized.parameters(({"embed": 3},), ([("embed",)],), ([(1, None)],),
                              ({"embed": ("model", 2)},))
    def test_malformed_logical_rules(self, mapping):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "logical_rules"):
            mh.sharding.logical_rules(mapping)


class OneDeviceTest(absltest.TestCase):

    def test_sharded_init_on_one_device_equals_jitted_init(self):
        model = m.make_model(stacked=True, annotated=True)
        mesh = _one_device_mesh()
        params = mh.sharding.init(model.init, m.LOGICAL_RULES, mesh)(jax.random.key(3), _TOKENS)
        want = jax.jit(model.init)(jax.random.key(3), _TOKENS)
        self.assertEqual(set(params), set(want))
        for k, v in want.items():
            np.testing.assert_array_equal(params[k], v)
        self.assertEqual(params["~/q_0/__call__/w"].sharding.spec, P(None, None, "model"))

    def test_state_init_returns_params_and_state(self):
        def f(x):
            mh.set_state("n", jnp.zeros((), jnp.int32))
            return mh.nn.Linear(2)(x)

        model = mh.transform_with_state(f)
        params, state = mh.sharding.init(model.init, [], _one_device_mesh())(1, jnp.ones((1, 3)))
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b"])
        self.assertEqual(state["~/n"], 0)

    def test_bad_mesh_and_init(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "jax.sharding.Mesh"):
            mh.sharding.init(m.make_model().init, [], "data:1")
        with self.assertRaisesRegex(mh.InvalidArgumentError, "got int"):
            mh.sharding.init(3, [], _one_device_mesh())(0)
        with self.assertRaises(mh.InvalidArgumentError):
            mh.sharding.init(m.make_model().init, "rules", _one_device_mesh())

    def test_mesh_parsing(self):
        mesh = mh.sharding.mesh("data:1, model:-1")
        self.assertEqual(dict(mesh.shape), {"data": 1, "model": 1})
        self.assertEqual(mesh.axis_types, (jax.sharding.AxisType.Auto,) * 2)
        with self.assertRaisesRegex(mh.ShardingError, "multiply to the 1 devices"):
            mh.sharding.mesh("data:2")
        for bad in ("data", "data:x", "data:1,data:1", {"data": 0}, 3):
            with self.assertRaises(mh.InvalidArgumentError, msg=bad):
                mh.sharding.mesh(bad)


class GuideTest(absltest.TestCase):

    def test_python_blocks_of_the_sharding_guide_run(self):
        text = (_ROOT / "docs" / "guides" / "sharding.md").read_text()
        blocks = re.findall(r"```python\n(.*?)```", text, re.S)
        self.assertGreater(len(blocks), 6)
        namespace = {}
        for block in blocks:
            exec(compile(block, "docs/guides/sharding.md", "exec"), namespace)  # noqa: S102
        table = namespace["mh"].summary(namespace["model"], namespace["tokens"],
                                        mesh=namespace["mesh"],
                                        rules=namespace["tensor_parallel"])
        self.assertIn("per device", table)


def _env(devices):
    return subprocess_env(devices, _TESTS)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MultiDeviceTest(absltest.TestCase):

    def test_on_8_host_devices(self):
        proc = subprocess.run([sys.executable, str(_TESTS / "sharding_devices.py")],
                              env=_env(8), capture_output=True, text=True, timeout=900,
                              cwd=_ROOT)
        self.assertEqual(proc.returncode, 0, proc.stderr[-6000:])
        diffs = re.findall(r"max \|8 devices - 1 device\| after 20 steps = (\S+)", proc.stdout)
        self.assertLen(diffs, 3, proc.stdout)

    @pytest.mark.slow
    def test_two_processes_equal_one_process(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        out = pathlib.Path(tmp.name)
        script = str(_TESTS / "sharding_multihost.py")
        port = str(_free_port())
        procs = [subprocess.Popen([sys.executable, script, str(out / f"p{i}.npz"), str(i), port],
                                  env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=_ROOT) for i in range(2)]
        for proc in procs:  # Never leave a process behind, whatever fails.
            self.addCleanup(proc.kill)
        single = subprocess.run([sys.executable, script, str(out / "single.npz")], env=_env(8),
                                capture_output=True, text=True, timeout=600, cwd=_ROOT)
        logs = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=600)
            logs.append(stdout + stderr[-3000:])
            self.assertEqual(proc.returncode, 0, logs[-1])
        self.assertEqual(single.returncode, 0, single.stderr[-3000:])
        self.assertIn("process 1 of 2: 4 local devices", logs[1])
        want = np.load(out / "single.npz")
        init = m.make_model().init(0, _TOKENS)
        for i in range(2):
            got = np.load(out / f"p{i}.npz")
            self.assertEqual(sorted(got.files), sorted(want.files))
            for k in want.files:
                np.testing.assert_allclose(got[k], want[k], atol=1e-5, err_msg=k)
        moved = max(float(np.abs(want[k] - init[k]).max()) for k in want.files)
        self.assertGreater(moved, 1e-2)  # 20 steps did train.


if __name__ == "__main__":
    absltest.main()
