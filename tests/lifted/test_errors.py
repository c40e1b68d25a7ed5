"""Misuse of mh.lifted: errors of the specific class, in the user's terms."""

import jax
import jax.numpy as jnp
from absl.testing import absltest

import minihaiku as mh
from lifted.common import L, Linear, X


class VmapArgumentErrorsTest(absltest.TestCase):

    def test_in_axes_length_counts_the_users_arguments(self):
        f = mh.transform(lambda x, y: L.vmap(lambda x, y: x + y, in_axes=(0,),
                                             split_rng=False)(x, y))
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    r"in_axes=\(0,\) has 1 entries.*2 positional"):
            f.init(0, X, X)

    def test_batch_size_mismatch_names_each_positional_argument(self):
        f = mh.transform(lambda x, y: L.vmap(lambda x, y: x + y, split_rng=False)(x, y))
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    r"argument 0: shape \(4,\), size 4.*argument 1: shape "
                                    r"\(3,\), size 3") as cm:
            f.init(0, jnp.ones(4), jnp.ones(3))
        self.assertNotIn("kwargs", str(cm.exception))

    def test_keyword_arguments_are_named(self):
        f = mh.transform(lambda x, y: L.vmap(lambda x, y: x + y, split_rng=False)(x, y=y))
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"keyword 'y': shape \(3,\)"):
            f.init(0, jnp.ones(4), jnp.ones(3))


class RematTracedFlagTest(absltest.TestCase):

    def test_branching_on_a_traced_argument_says_static_argnums(self):
        def block(x, training):
            return Linear(3)(x) * (0.5 if training else 1.0)

        f = mh.transform(lambda x, t: L.remat(block)(x, t))
        params = f.init(0, X, True)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "static_argnums") as cm:
            f.apply(params, None, X, True)
        self.assertIsInstance(cm.exception.__cause__, jax.errors.TracerBoolConversionError)
        # The fix it names works.
        g = mh.transform(lambda x, t: L.remat(block, static_argnums=(1,))(x, t))
        g.apply(params, None, X, True)


class BranchShapeMismatchTest(absltest.TestCase):

    def test_cond_names_each_branch_and_its_shapes(self):
        def keep(x):
            return x

        def shorten(x):
            return x[:2]

        f = mh.transform(lambda x: L.cond(jnp.sum(x) > 0, keep, shorten, x))
        for run in (lambda: f.init(0, X), lambda: f.apply({}, None, X)):
            with self.assertRaisesRegex(
                    mh.LiftedBodyError,
                    r"(?s)branch 0: .*keep at .*test_errors.py:\d+ returns float32\[4, 3\]"
                    r".*branch 1: .*shorten at .*test_errors.py:\d+ returns float32\[2, 3\]"):
                run()

    def test_switch_names_dtype_differences(self):
        f = mh.transform(lambda x: L.switch(1, [lambda x: x, lambda x: x.astype(jnp.int32)], x))
        with self.assertRaisesRegex(mh.LiftedBodyError, r"(?s)float32\[4, 3\].*int32\[4, 3\]"):
            f.apply({}, None, X)


class BodyRuleErrorsTest(absltest.TestCase):

    def test_params_created_only_while_traced_are_a_body_error(self):
        def body(c, x):
            if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
                Linear(3)(c)
            return c, x

        f = mh.transform(lambda x: L.scan(body, x, X)[0])
        with self.assertRaises(mh.LiftedBodyError):
            f.init(0, X)


if __name__ == "__main__":
    absltest.main()
