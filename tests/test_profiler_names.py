"""mh.config.profiler_names: module paths in HLO op_name metadata."""

import re

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh
from minihaiku import frame as frame_lib

X = jnp.ones((2, 5))
KEY = jax.random.PRNGKey(0)


def op_names(text: str) -> set:
    """The op_name metadata of the ops (not the names of the arguments)."""
    return {n for n in re.findall(r'op_name="([^"]*)"', text) if n.startswith("jit(")}


def mlp_apply():
    init, apply = mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP([4, 4, 3])(x)))
    return init(KEY, X), apply


class ProfilerNamesTest(absltest.TestCase):

    def tearDown(self):
        mh.config.update("profiler_names", True)
        super().tearDown()

    def test_on_by_default_and_eager_runs_take_the_fast_path(self):
        self.assertTrue(mh.config.profiler_names)
        seen = []
        mh.transform(lambda: seen.append(frame_lib.frames()[-1].hooks)).init(None)
        self.assertIsNone(seen[0])
        params, apply = mlp_apply()
        names = op_names(jax.jit(apply).lower(params, X).compile().as_text())
        self.assertTrue([n for n in names if "Linear_0/__call__" in n], names)

    def test_off_leaves_no_names(self):
        mh.config.update("profiler_names", False)
        params, apply = mlp_apply()
        names = op_names(jax.jit(apply).lower(params, X).compile().as_text())
        self.assertFalse([n for n in names if "Linear_" in n], names)

    def test_optimized_hlo_names_every_linear(self):
        mh.config.update("profiler_names", True)
        params, apply = mlp_apply()
        compiled = jax.jit(apply).lower(params, X).compile().as_text()
        names = op_names(compiled)
        for i in range(3):
            self.assertTrue(
                any(f"MLP_0/__call__/Linear_{i}/__call__/dot_general" in n for n in names),
                (i, names))
        lowered = jax.jit(apply).lower(params, X).as_text(debug_info=True)
        self.assertIn("MLP_0/__call__/Linear_2/__call__/add", lowered)

    def test_values_unchanged_and_eager_works(self):
        params, apply = mlp_apply()
        expected = apply(params, X)
        with mh.config.override(profiler_names=True):
            self.assertTrue(mh.config.profiler_names)
            np.testing.assert_array_equal(apply(params, X), expected)
            np.testing.assert_array_equal(jax.jit(apply)(params, X), expected)
        self.assertTrue(mh.config.profiler_names)

    def test_names_inside_layer_stack(self):
        mh.config.update("profiler_names", True)

        def f(x):
            return mh.lifted.layer_stack(2)(lambda h: jnp.tanh(mh.nn.Linear(5)(h)))(x)

        init, apply = mh.without_apply_rng(mh.transform(f))
        params = init(KEY, X)
        names = op_names(jax.jit(apply).lower(params, X).compile().as_text())
        self.assertTrue(any("Linear_0/__call__/dot_general" in n for n in names), names)

    def test_module_called_outside_its_parent_gets_its_full_path(self):
        mh.config.update("profiler_names", True)

        class Caller(mh.Module):
            def __call__(self, layer, x):
                return layer(x)

        def f(x):
            layer = mh.nn.Linear(3)   # built at top level, called inside Caller
            return Caller()(layer, x)

        init, apply = mh.without_apply_rng(mh.transform(f))
        params = init(KEY, X)
        names = op_names(jax.jit(apply).lower(params, X).compile().as_text())
        self.assertTrue(any("Caller_0/__call__/Linear_0/__call__/dot_general" in n
                            for n in names), names)

    def test_bad_switches_are_refused(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "no switch"):
            mh.config.update("profile_names", True)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "bool"):
            mh.config.update("profiler_names", 1)
        self.assertTrue(mh.config.profiler_names)


if __name__ == "__main__":
    absltest.main()
