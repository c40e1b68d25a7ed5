"""Every misuse gives a clear error of its own MiniHaikuError subclass; nothing is left behind."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import minihaiku as mh
from minihaiku import frame as frame_lib


class Linear(mh.Module):

    def __init__(self, size):
        super().__init__()
        self.size = size

    def __call__(self, x):
        return x @ mh.get_param("w", (x.shape[-1], self.size))


class ErrorsTest(absltest.TestCase):

    def test_errors_are_value_errors(self):
        self.assertTrue(issubclass(mh.MiniHaikuError, ValueError))
        for cls in (mh.NotInTransformError, mh.MissingParamError, mh.MismatchError,
                    mh.NoRngError, mh.StateNotAllowedError, mh.UnliftedTransformError):
            self.assertTrue(issubclass(cls, mh.MiniHaikuError))

    def test_outside_transform(self):
        for call in (lambda: mh.get_param("w", ()), lambda: mh.get_state("s"),
                     lambda: mh.set_state("s", 1), mh.next_rng_key, mh.maybe_next_rng_key,
                     lambda: Linear(3)):
            with self.assertRaisesRegex(mh.NotInTransformError, r"mh\.transform\(f\)"):
                call()

    def test_missing_param_in_apply_names_path_and_init(self):
        init, apply = mh.transform(lambda x: Linear(3)(x))
        params = init(0, jnp.ones((1, 2)))
        del params["~/Linear_0/__call__/w"]
        with self.assertRaisesRegex(mh.MissingParamError,
                                    r"'~/Linear_0/__call__/w' \(shape \(2, 3\)\).*created in init"):
            apply(params, None, jnp.ones((1, 2)))

    def test_new_param_in_apply_is_frozen_out(self):
        def f(x):
            if not mh.running_init():
                Linear(4, )(x)
            return x

        init, apply = mh.transform(f)
        with self.assertRaisesRegex(mh.MissingParamError, "~/Linear_0/__call__/w"):
            apply(init(0, jnp.ones((1, 2))), None, jnp.ones((1, 2)))

    def test_shape_mismatch_names_both_shapes(self):
        init, apply = mh.transform(lambda x: Linear(3)(x))
        params = init(0, jnp.ones((1, 2)))
        with self.assertRaisesRegex(
                mh.MismatchError,
                r"'~/Linear_0/__call__/w' has shape \(2, 3\) but shape \(5, 3\) was requested"):
            apply(params, None, jnp.ones((1, 5)))

    def test_dtype_mismatch(self):
        init, apply = mh.transform(lambda: mh.get_param("p", (2,)))
        params = init(0)
        params = {"~/p": params["~/p"].astype(jnp.bfloat16)}
        with self.assertRaisesRegex(mh.MismatchError, "'~/p' has dtype bfloat16 but dtype float32"):
            apply(params, None)

    def test_inconsistent_shapes_within_init(self):
        def f():
            mh.get_param("p", (2,))
            mh.get_param("p", (3,))

        with self.assertRaisesRegex(mh.MismatchError, r"'~/p' has shape \(2,\).*\(3,\)"):
            mh.transform(f).init(0)

    def test_initializer_returning_wrong_shape(self):
        bad = lambda key, shape, dtype: jnp.zeros((1,), dtype)  # noqa: E731
        with self.assertRaisesRegex(mh.MismatchError, "initializer of param '~/p'"):
            mh.transform(lambda: mh.get_param("p", (2,), init=bad)).init(0)

    def test_no_rng(self):
        with self.assertRaisesRegex(mh.NoRngError, "'~/Linear_0/__call__/w'.*rng=None"):
            mh.transform(lambda x: Linear(3)(x)).init(None, jnp.ones((1, 2)))
        with self.assertRaisesRegex(mh.NoRngError, r"next_rng_key.*rng=None"):
            mh.transform(lambda: mh.next_rng_key()).apply({}, None)

    def test_bad_rng_and_argument_order(self):
        init, apply = mh.transform(lambda: mh.next_rng_key())
        with self.assertRaisesRegex(mh.InvalidRngError, r"rng must be a JAX PRNG key.*float32"):
            init(jnp.ones((3,)))
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    "params must be the dict returned by init"):
            apply(jax.random.PRNGKey(0), {})

    def test_state_under_transform_names_transform_with_state(self):
        for f in (lambda: mh.get_state("s", (), init=jnp.zeros), lambda: mh.set_state("s", 1)):
            with self.assertRaisesRegex(mh.StateNotAllowedError, "transform_with_state"):
                mh.transform(f).init(None)

    def test_missing_state_in_apply(self):
        def f():
            mh.set_state("s", mh.get_state("s", (), init=jnp.zeros) + 1)

        init, apply = mh.transform_with_state(f)
        params, _ = init(None)
        with self.assertRaisesRegex(mh.MissingStateError, "State '~/s'.*created in init"):
            apply(params, {}, None)

    def test_set_state_must_keep_shape(self):
        def f():
            s = mh.get_state("s", (2,), init=jnp.zeros)
            mh.set_state("s", jnp.concatenate([s, s]))

        init, apply = mh.transform_with_state(f)
        with self.assertRaisesRegex(mh.MismatchError, r"'~/s' has shape \(4,\).*\(2,\)"):
            init(None)
        with self.assertRaisesRegex(mh.MismatchError, r"'~/s' has shape \(4,\).*\(2,\)"):
            apply({}, {"~/s": jnp.zeros(2)}, None)

    def test_get_state_without_initializer(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "'~/s' does not exist yet"):
            mh.transform_with_state(lambda: mh.get_state("s", (2,))).init(None)

    def test_module_without_super_init(self):
        class Bad(mh.Module):
            def __init__(self):
                pass

            def __call__(self, x):
                return x

        with self.assertRaisesRegex(mh.ModuleDefinitionError, r"must call super\(\).__init__"):
            mh.transform(lambda x: Bad()(x)).init(None, 1.0)

    def test_no_rng_error_says_what_the_initializer_raised(self):
        def f():
            return mh.get_param("w", (3,), init=jax.nn.initializers.orthogonal())

        with self.assertRaisesRegex(mh.NoRngError, r"'~/w'.*failed with key=None: \w+Error"):
            mh.transform(f).init(None)

    def test_names_with_a_slash_are_refused(self):
        with self.assertRaisesRegex(mh.InvalidNameError, "'Linear_0/w'.*without '/'"):
            mh.transform(lambda: mh.get_param("Linear_0/w", (1,))).init(0)
        with self.assertRaisesRegex(mh.InvalidNameError, "'a/b'.*without '/'"):
            mh.transform_with_state(lambda: mh.set_state("a/b", 1)).init(None)

    def test_set_state_keeps_dtype_in_init_too(self):
        def f():
            n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
            mh.set_state("n", n + 0.5)

        with self.assertRaisesRegex(mh.MismatchError, "'~/n' has dtype float32 but dtype int32"):
            mh.transform_with_state(f).init(None)

    def test_bad_module_name(self):
        with self.assertRaisesRegex(mh.InvalidNameError, "'a/b'.*without '/'"):
            mh.transform(lambda: mh.Module(name="a/b")).init(None)

    def test_raw_jax_transform_around_param_creation(self):
        def f(x):
            return jax.jit(lambda y: Linear(3)(y))(x)

        with self.assertRaisesRegex(mh.UnliftedTransformError,
                                    r"'~/Linear_0/__call__/w'.*inside jax\.jit.*jax\.jit\(apply\)"):
            mh.transform(f).init(0, jnp.ones((1, 2)))
        # Pure code and another transform's apply under a raw JAX transform stay fine.
        inner = mh.transform(lambda x: Linear(3)(x))
        params = inner.init(0, jnp.ones((1, 2)))

        def g(x):
            return jax.jit(lambda y: inner.apply(params, None, jnp.tanh(y)))(x)

        np.testing.assert_allclose(mh.transform(g).apply({}, None, jnp.ones((1, 2))),
                                   jnp.tanh(jnp.ones((1, 2))) @ params["~/Linear_0/__call__/w"],
                                   rtol=1e-6)

    def test_exception_inside_f_leaves_nothing_behind(self):
        def f(x):
            class Boom(mh.Module):
                def __call__(self, x):
                    Linear(3)(x)
                    raise RuntimeError("boom")
            return Boom()(x)

        for _ in range(2):
            with self.assertRaisesRegex(RuntimeError, "boom"):
                mh.transform(f).init(0, jnp.ones((1, 2)))
            self.assertEqual(frame_lib.frames(), [])
            self.assertFalse(mh.inside_transform())
        params = mh.transform(lambda x: Linear(3)(x)).init(0, jnp.ones((1, 2)))
        self.assertEqual(list(params), ["~/Linear_0/__call__/w"])



class ValidationTest(absltest.TestCase):
    """Bad rngs, shapes, values and initializers: specific errors saying what is expected."""

    def test_invalid_rngs_say_what_a_key_may_be(self):
        init = mh.transform(lambda: mh.get_param("w", (2,))).init
        for bad in (jnp.zeros(3, jnp.uint32), jnp.zeros((2, 2), jnp.uint32), 2**64, 2**63,
                    1.5, "seed", True, jnp.zeros(2, jnp.int32), [0, 1]):
            with self.assertRaisesRegex(mh.InvalidRngError,
                                        r"rng must be a JAX PRNG key.*raw key uint32\[2\]"):
                init(bad)
        with self.assertRaisesRegex(mh.InvalidRngError, "int seed 18446744073709551616"):
            init(2**64)
        # The valid forms still agree with each other.
        by_seed = init(2**63 - 1)["~/w"]
        np.testing.assert_array_equal(by_seed, init(jax.random.PRNGKey(2**63 - 1))["~/w"])
        np.testing.assert_array_equal(init(np.uint32(3))["~/w"], init(3)["~/w"])

    def test_shape_must_be_a_sequence_of_ints(self):
        for shape, pattern in ((3, r"shape must be a tuple of ints, got int 3.*\(3,\)"),
                               ((2.0,), r"must hold non-negative ints, got 2.0"),
                               ((-1,), "got -1"), ("ab", "got str")):
            with self.assertRaisesRegex(mh.InvalidArgumentError, "'~/w'.*" + pattern):
                mh.transform(lambda shape=shape: mh.get_param("w", shape)).init(0)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "State '~/s'.*got int 3"):
            mh.transform_with_state(lambda: mh.get_state("s", 3, init=jnp.zeros)).init(None)
        # Any sequence of ints is fine.
        params = mh.transform(lambda: mh.get_param("w", [2, np.int64(3)])).init(0)
        self.assertEqual(params["~/w"].shape, (2, 3))

    def test_params_values_must_be_arrays(self):
        apply = mh.transform(lambda: mh.get_param("w", (2,))).apply
        for bad in ([1.0, 2.0], 1.0):
            with self.assertRaisesRegex(mh.InvalidArgumentError,
                                        f"Param '~/w' is a {type(bad).__name__}, not an array"):
                apply({"~/w": bad}, None)
        _, sapply = mh.transform_with_state(lambda: mh.get_state("s"))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "State '~/s' is a list"):
            sapply({}, {"~/s": [1.0]}, None)

    def test_initializer_returning_a_list(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    "initializer of param '~/w' is a list, not an array"):
            mh.transform(lambda: mh.get_param("w", (2,), init=lambda k, s, d: [0.0, 0.0])).init(0)
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    "initializer of state '~/s' is a list, not an array"):
            mh.transform_with_state(
                lambda: mh.get_state("s", (2,), init=lambda s, d: [0.0, 0.0])).init(None)

    def test_initializer_signatures_mixed_up(self):
        with self.assertRaisesRegex(
                mh.InvalidArgumentError,
                r"param '~/w'.*state initializer.*init\(shape, dtype\).*param initializers are "
                r"called as init\(key, shape, dtype\).*jax\.nn\.initializers\.zeros"):
            mh.transform(lambda: mh.get_param("w", (2,), init=jnp.zeros)).init(0)
        # Without an rng too: the signature, not the missing key, is the problem.
        with self.assertRaisesRegex(mh.InvalidArgumentError, "state initializer"):
            mh.transform(lambda: mh.get_param("w", (2,), init=jnp.ones)).init(None)
        with self.assertRaisesRegex(
                mh.InvalidArgumentError,
                r"state '~/s'.*param initializer.*state initializers are called as "
                r"init\(shape, dtype\).*init=jnp\.zeros"):
            mh.transform_with_state(
                lambda: mh.get_state("s", (2,), init=jax.nn.initializers.zeros)).init(None)

    def test_set_state_of_a_non_array(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "'~/s' got str"):
            mh.transform_with_state(lambda: mh.set_state("s", "abc")).init(None)


class ErrorTaxonomyTest(absltest.TestCase):

    def test_every_raise_in_the_library_uses_a_specific_class(self):
        # One subclass per kind of misuse: the bare base class is never raised.
        root = pathlib.Path(mh.__file__).parent
        bare = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
                for i, line in enumerate(p.read_text().splitlines(), 1)
                if re.search(r"raise\s+(errors\.)?MiniHaikuError\(", line)]
        self.assertEqual(bare, [])

    def test_every_error_class_is_exported_and_a_value_error(self):
        classes = [v for v in vars(mh.errors).values()
                   if isinstance(v, type) and issubclass(v, mh.MiniHaikuError)]
        self.assertGreater(len(classes), 15)
        for cls in classes:
            self.assertIs(getattr(mh, cls.__name__), cls)
            self.assertIn(cls.__name__, mh.__all__)
            self.assertTrue(issubclass(cls, ValueError))


if __name__ == "__main__":
    absltest.main()
