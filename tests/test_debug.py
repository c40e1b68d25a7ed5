"""mh.debug.check_finite: the first non-finite module output, param or gradient is named."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh

X = jnp.ones((2, 4))


class Layer(mh.Module):
    """Linear then tanh; the layer built with ``bad=True`` divides by zero instead."""

    def __init__(self, bad=False, name=None):
        super().__init__(name=name)
        self.bad = bad

    def __call__(self, x):
        x = mh.nn.Linear(4)(x)
        return x / 0.0 if self.bad else jnp.tanh(x)


class Root(mh.Module):
    def __call__(self, x):
        return jnp.sqrt(x)


class Div(mh.Module):
    def __call__(self, x, d):
        return x / d


def ten_layers(x):
    for i in range(10):
        x = Layer(bad=(i == 6))(x)     # the 7th layer divides by zero
    return x


def stacked(x, d):
    def layer(x, d):
        return Div()(jnp.tanh(mh.nn.Linear(4)(x)), d), None
    return mh.lifted.layer_stack(10, with_per_layer_inputs=True)(layer)(x, d)[0]


class CheckFiniteTest(absltest.TestCase):

    def test_seventh_layer_named_eagerly_and_step_counted(self):
        checked = mh.debug.check_finite(ten_layers)
        init, apply = mh.without_apply_rng(mh.transform(checked))
        params = init(0, X)
        with self.assertRaisesRegex(mh.NonFiniteError, r"step 0: .*output of '~/Layer_6'"):
            apply(params, X)
        with self.assertRaisesRegex(mh.NonFiniteError, r"step 1: .*'~/Layer_6'"):
            apply(params, X)
        self.assertEqual([(f.path, f.step) for f in checked.findings],
                         [("~/Layer_6", 0), ("~/Layer_6", 1)])
        print(checked.findings[0])

    def test_seventh_layer_named_under_jit(self):
        checked = mh.debug.check_finite(ten_layers)
        init, apply = mh.without_apply_rng(mh.transform(checked))
        params = init(0, X)
        with self.assertRaisesRegex(Exception, r"output of '~/Layer_6'"):
            jax.jit(apply)(params, X)
        self.assertEqual(checked.findings[0].path, "~/Layer_6")

    def test_layer_index_inside_layer_stack(self):
        d = jnp.ones(10).at[6].set(0.0)
        for jit in (False, True):
            checked = mh.debug.check_finite(stacked)
            init, apply = mh.without_apply_rng(mh.transform(checked))
            params = init(0, X, d)
            with self.assertRaisesRegex(Exception, r"'~/Div_0' \(__call__\), call 6 "):
                (jax.jit(apply) if jit else apply)(params, X, d)
            finding = checked.findings[0]
            self.assertEqual((finding.kind, finding.path, finding.call), ("output", "~/Div_0", 6))

    def test_finite_model_unchanged_and_print_mode(self):
        f = mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP([4, 3])(x)))
        checked_f = mh.debug.check_finite(lambda x: mh.nn.MLP([4, 3])(x), raise_error=False)
        checked = mh.without_apply_rng(mh.transform(checked_f))
        params = f.init(0, X)
        np.testing.assert_array_equal(jax.jit(checked.apply)(params, X), f.apply(params, X))
        self.assertEqual(checked_f.findings, [])
        bad = {**params, "~/MLP_0/__call__/Linear_1/__call__/b": jnp.full((3,), jnp.nan)}
        out = checked.apply(bad, X)      # printed, not raised
        self.assertTrue(np.isnan(out).all())
        self.assertEqual(checked_f.findings[0].kind, "param")
        self.assertEqual(checked_f.findings[0].path, "~/MLP_0/__call__/Linear_1/__call__/b")

    def test_gradients(self):
        def f(x):
            # h == 0, where sqrt's gradient is inf.
            h = mh.nn.Linear(4, w_init=jax.nn.initializers.zeros)(x)
            return jnp.sum(Root()(h))

        checked = mh.debug.check_finite(f, grads=True)
        init, apply = mh.without_apply_rng(mh.transform(checked))
        params = init(0, X)
        self.assertTrue(np.isfinite(apply(params, X)))
        with self.assertRaisesRegex(Exception, r"gradient of the output of '~/Linear_0'"):
            jax.jit(jax.grad(apply))(params, X)

    def test_costs_nothing_unwrapped_and_refuses_transformed(self):
        f = mh.without_apply_rng(mh.transform(ten_layers))
        params = f.init(0, X)
        text = jax.jit(f.apply).lower(params, X).as_text()
        self.assertNotIn("callback", text)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "before it is transformed"):
            mh.debug.check_finite(f)


if __name__ == "__main__":
    absltest.main()
