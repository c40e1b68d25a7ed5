"""layer_stack's arguments: per-layer inputs (Haiku's form), reverse, num_layers."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from lifted.common import L, Linear, X, assert_close, jgrad, lin

P = "~/Linear_0/__call__"


def _layer(p, i):
    return {k: v[i] for k, v in p.items()}


class PerLayerInputsTest(absltest.TestCase):

    def test_slices_in_and_stacked_outputs_out_match_reference(self):
        ys = jnp.arange(3 * 4 * 3, dtype=jnp.float32).reshape(3, 4, 3) / 30

        def f(x, ys):
            def layer(x, y, *, scale):
                h = jnp.tanh(Linear(3)(x + y)) * scale
                return h, jnp.sum(h, axis=-1)
            return L.layer_stack(3, with_per_layer_inputs=True)(layer)(x, ys, scale=0.5)

        init, apply = mh.transform(f)
        params = init(0, X, ys)

        def ref(p):
            x, zs = X, []
            for i in range(3):
                x = jnp.tanh(lin(_layer(p, i), P, x + ys[i])) * 0.5
                zs.append(jnp.sum(x, axis=-1))
            return x, jnp.stack(zs)

        assert_close(apply(params, None, X, ys), ref(params))
        assert_close(jax.jit(apply)(params, None, X, ys), ref(params))
        assert_close(jgrad(lambda p: jnp.sum(apply(p, None, X, ys)[1]))(params),
                     jgrad(lambda p: jnp.sum(ref(p)[1]))(params))

    def test_inputs_without_the_layer_axis_are_refused(self):
        f = mh.transform(lambda x: L.layer_stack(3, with_per_layer_inputs=True)(
            lambda x, y: (x + y, None))(x, jnp.ones((2, 3))))
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"per-layer input 1.*\(2, 3\)"):
            f.init(0, X)

    def test_layer_not_returning_a_pair_is_a_body_error(self):
        f = mh.transform(lambda x: L.layer_stack(2, with_per_layer_inputs=True)(
            lambda x, y: x + y)(x, jnp.ones((2, 3))))
        with self.assertRaisesRegex(mh.LiftedBodyError, r"return \(x, z\)|must return"):
            f.init(0, X)


class ReverseTest(absltest.TestCase):

    def test_last_layer_runs_first_and_uses_its_own_slice(self):
        f = mh.transform(lambda x: L.layer_stack(3, reverse=True)(
            lambda x: jnp.tanh(Linear(3)(x)))(x))
        params = f.init(0, X)
        forward = mh.transform(lambda x: L.layer_stack(3)(lambda x: jnp.tanh(Linear(3)(x)))(x))
        # Same keys per layer index: reverse changes the order, not the params.
        assert_close(params, forward.init(0, X))

        def ref(p):
            x = X
            for i in (2, 1, 0):
                x = jnp.tanh(lin(_layer(p, i), P, x))
            return x

        assert_close(f.apply(params, None, X), ref(params))
        assert_close(jax.jit(f.apply)(params, None, X), ref(params))


class NumLayersTest(parameterized.TestCase):

    @parameterized.named_parameters(("int", 2), ("numpy_int64", np.int64(2)),
                                    ("numpy_int32", np.int32(2)))
    def test_integers_are_accepted(self, n):
        params = mh.transform(lambda x: L.layer_stack(n)(Linear(3))(x)).init(0, X)
        self.assertEqual(params[f"{P}/w"].shape, (2, 3, 3))

    @parameterized.named_parameters(("true", True), ("numpy_bool", np.bool_(True)),
                                    ("float", 2.0), ("zero", 0), ("negative", -1),
                                    ("string", "2"))
    def test_non_integers_bools_and_non_positive_are_refused(self, n):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "num_layers"):
            L.layer_stack(n)


if __name__ == "__main__":
    absltest.main()
