"""mh.cost: per-module FLOPs and bytes from a trace, against XLA's own numbers."""

import os
import tempfile

import jax
import jax.numpy as jnp
import pytest
from absl.testing import absltest

import minihaiku as mh

KEY = jax.random.PRNGKey(0)
B, IN, HID, OUT = 16, 32, 64, 8
_W_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _xla(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled.cost_analysis(), compiled.memory_analysis()


def _xla_peak(memory) -> int:
    return (memory.argument_size_in_bytes + memory.output_size_in_bytes
            - memory.alias_size_in_bytes + memory.temp_size_in_bytes)


def _mlp():
    return mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP([HID, OUT])(x)))


def _sgd_step(apply):
    def step(params, x, y):
        loss = lambda p: jnp.mean((apply(p, x) - y) ** 2)  # noqa: E731
        grads = jax.grad(loss)(params)
        return jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g, params, grads)
    return jax.jit(step)


def _transformer(layers, width=64, heads=4, hidden=256, unroll=1):
    def block(x):
        h = mh.nn.LayerNorm()(x)
        x = x + mh.nn.MultiHeadAttention(heads, width // heads, _W_INIT)(
            h, h, h, is_causal=True)
        return x + mh.nn.MLP([hidden, width], activation=jax.nn.gelu)(mh.nn.LayerNorm()(x))
    return mh.without_apply_rng(mh.transform(
        lambda x: mh.lifted.layer_stack(layers, unroll=unroll)(block)(x)))


def _convnet(x):
    for _ in range(2):
        x = jax.nn.relu(mh.nn.Conv2D(8, 3)(x))
    x = mh.nn.max_pool(x, 2, 2, "VALID")
    return mh.nn.Linear(10)(x.reshape(x.shape[0], -1))


class CostTest(absltest.TestCase):

    def test_linear_rows_count_dots_and_bias_adds_exactly(self):
        report = mh.cost(_mlp(), jax.ShapeDtypeStruct((B, IN), jnp.float32))
        rows = {r.module: r for r in report.modules}
        first = rows["~/MLP_0/__call__/Linear_0"]
        self.assertEqual(first.flops, 2 * B * IN * HID + B * HID)
        self.assertEqual(first.param_bytes, (IN * HID + HID) * 4)
        self.assertEqual(rows["~/MLP_0/__call__/Linear_1"].flops, 2 * B * HID * OUT + B * OUT)
        self.assertEqual(rows["~/MLP_0"].flops, B * HID)    # the relu: max(x, 0)
        self.assertEqual(report.flops, sum(r.flops for r in report.modules))
        self.assertIn("~/MLP_0/__call__/Linear_0", str(report))
        self.assertIn("Total:", str(report))

    def test_mlp_train_step_flops_match_xla(self):
        f = _mlp()
        x, y = jnp.ones((B, IN)), jnp.ones((B, OUT))
        params = f.init(KEY, x)
        step = _sgd_step(f.apply)
        xla, _ = _xla(step, params, x, y)
        ours = mh.cost(step, params, x, y)
        self.assertAlmostEqual(ours.flops / xla["flops"], 1.0, delta=0.02)

    @pytest.mark.slow
    def test_convnet_train_step_flops_match_xla(self):
        f = mh.without_apply_rng(mh.transform(_convnet))
        x, y = jnp.ones((4, 12, 12, 3)), jnp.ones((4, 10))
        params = f.init(KEY, x)
        step = _sgd_step(f.apply)
        xla, _ = _xla(step, params, x, y)
        ours = mh.cost(step, params, x, y)
        self.assertAlmostEqual(ours.flops / xla["flops"], 1.0, delta=0.02)
        self.assertAlmostEqual(ours.transcendentals, xla.get("transcendentals", 0), delta=1)

    @pytest.mark.slow
    def test_transformer_step_flops_match_xla_and_count_every_layer(self):
        x = jnp.ones((2, 16, 64))
        one = _transformer(1)
        params = one.init(KEY, x)
        xla, _ = _xla(_sgd_step(one.apply), params, x, x)
        ours = mh.cost(_sgd_step(one.apply), params, x, x)
        self.assertAlmostEqual(ours.flops / xla["flops"], 1.0, delta=0.02)
        # XLA counts a loop body once; mh.cost counts every layer.
        three = _transformer(3)
        report = mh.cost(_sgd_step(three.apply), three.init(KEY, x), x, x)
        self.assertAlmostEqual(report.flops / (3 * ours.flops), 1.0, delta=0.005)
        rows = {r.module: r for r in report.modules}
        self.assertEqual(rows["~/MLP_0/__call__/Linear_0"].runs, 3)
        for row in ours.modules:
            if row.module.endswith("_0") and "Linear" in row.module or "query" in row.module:
                self.assertEqual(rows[row.module].flops, 3 * row.flops, row.module)

    @pytest.mark.slow
    def test_peak_memory_of_train_steps_within_ten_percent(self):
        x = jnp.ones((4, 64, 64))
        f = _transformer(4)
        params = f.init(KEY, x)
        step = _sgd_step(f.apply)
        _, memory = _xla(step, params, x, x)
        report = mh.cost(step, params, x, x, memory=True)
        self.assertAlmostEqual(report.peak_bytes / _xla_peak(memory), 1.0, delta=0.1)
        self.assertIn("Predicted peak device memory", str(report))
        f = mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP([256, 256, 1])(x)))
        x, y = jnp.ones((512, 32)), jnp.ones((512, 1))
        params = f.init(KEY, x)
        step = _sgd_step(f.apply)
        _, memory = _xla(step, params, x, y)
        report = mh.cost(step, params, x, y, memory=True)
        self.assertAlmostEqual(report.peak_bytes / _xla_peak(memory), 1.0, delta=0.1)

    @pytest.mark.slow
    def test_peak_memory_of_a_convnet_step_with_max_pool_within_ten_percent(self):
        # Layout copies for the kernel gradients and the max-pool gradient's
        # index arrays are most of what XLA's CPU backend adds here.
        def net(x):
            for _ in range(3):
                x = jax.nn.relu(mh.nn.Conv2D(32, 3)(x))
            x = mh.nn.max_pool(x, 2, 2, "VALID")
            return mh.nn.Linear(10)(x.reshape(x.shape[0], -1))

        f = mh.without_apply_rng(mh.transform(net))
        x, y = jnp.ones((64, 32, 32, 3)), jnp.ones((64, 10))
        params = f.init(KEY, x)
        step = _sgd_step(f.apply)
        _, memory = _xla(step, params, x, y)
        report = mh.cost(step, params, x, y, memory=True)
        self.assertAlmostEqual(report.peak_bytes / _xla_peak(memory), 1.0, delta=0.1)

    def test_lifted_ops_attribute_to_their_modules(self):
        def f(x):
            x = mh.lifted.vmap(lambda r: mh.nn.Linear(HID)(r), split_rng=False)(x)
            step = lambda c, _: (jnp.tanh(mh.nn.Linear(HID, name="cell")(c)), None)  # noqa: E731
            x, _ = mh.lifted.scan(step, x, None, length=5)
            x = mh.lifted.remat(lambda h: mh.nn.Linear(OUT, name="head")(h))(x)
            return mh.lifted.cond(True, lambda h: h * 2.0, lambda h: h, x)

        report = mh.cost(mh.transform(f), jax.ShapeDtypeStruct((B, IN), jnp.float32))
        rows = {r.module: r for r in report.modules}
        self.assertEqual(rows["~/Linear_0"].flops, 2 * B * IN * HID + B * HID)
        self.assertEqual(rows["~/cell_0"].runs, 5)
        self.assertEqual(rows["~/cell_0"].flops, 5 * (2 * B * HID * HID + B * HID))
        self.assertEqual(rows["~/head_0"].flops, 2 * B * HID * OUT + B * OUT)

    def test_jitted_step_with_a_static_argument(self):
        f = _mlp()
        x = jnp.ones((B, IN))
        params = f.init(KEY, x)

        def step(params, x, scale):
            out = f.apply(params, x)
            return out * 2.0 if scale > 1 else out     # needs a Python value

        jitted = jax.jit(step, static_argnums=2)
        report = mh.cost(jitted, params, x, 2)
        self.assertEqual(report.flops, mh.cost(f, x).flops + B * OUT)
        self.assertEqual(report.param_bytes, mh.data.nbytes(params))

    def test_plain_module_function_is_transformed(self):
        report = mh.cost(lambda x: mh.nn.Linear(3)(x), jnp.ones((2, 4)))
        self.assertEqual(report.flops, 2 * 2 * 4 * 3 + 2 * 3)
        self.assertEqual(report.param_bytes, (4 * 3 + 3) * 4)

    def test_stateful_network(self):
        def f(x):
            return mh.nn.BatchNorm(0.9)(mh.nn.Linear(HID)(x), True)

        report = mh.cost(mh.transform_with_state(f), jax.ShapeDtypeStruct((B, IN), jnp.float32))
        rows = {r.module: r for r in report.modules}
        self.assertEqual(rows["~/Linear_0"].flops, 2 * B * IN * HID + B * HID)
        self.assertGreater(rows["~/BatchNorm_0"].flops, 0)

    def test_plot_saves_a_png(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "cost.png")
            mh.cost(_mlp(), jnp.ones((B, IN)), plot=path)
            with open(path, "rb") as fh:
                self.assertEqual(fh.read(8), b"\x89PNG\r\n\x1a\n")
            self.assertEqual(os.listdir(d), ["cost.png"])

    def test_bad_function_is_refused(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "function to cost"):
            mh.cost(3, jnp.ones(2))


if __name__ == "__main__":
    absltest.main()
