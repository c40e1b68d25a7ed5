"""The one param/state pipeline: interceptors, policies, logical axes, lift and
multi_transform going through the core, never beside it (each test here failed
before the pipeline was rebuilt)."""

import ast
import importlib
import pathlib
import re
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from jax.sharding import PartitionSpec as P

import minihaiku as mh

_LIB = pathlib.Path(mh.__file__).parent


def _noop_getter(next_getter, value, ctx):
    return next_getter(value)


class _Unused(mh.Module):
    def __call__(self, x):
        return x


class PolicyKeepsChecksTest(absltest.TestCase):
    """Item 1: a policy on an unrelated class never switches a check off."""

    def tearDown(self):
        mh.precision.clear_policies()
        super().tearDown()

    def test_float16_params_into_float32_linear_refused_with_unrelated_policy(self):
        f = mh.transform(lambda x: mh.nn.Linear(3)(x))
        x = jnp.ones((1, 2))
        params = f.init(0, x)
        half = jax.tree_util.tree_map(lambda p: p.astype(jnp.float16), params)
        mh.precision.set_policy(_Unused, "params=float32,compute=bfloat16,output=float32")
        with self.assertRaisesRegex(mh.MismatchError, "Linear_0/__call__/w"):
            f.apply(half, None, x)

    def test_int_request_on_float_param_refused_with_policy(self):
        def g():
            mh.get_param("w", (2,), jnp.float32, init=jax.nn.initializers.zeros)
            return mh.get_param("w", (2,), jnp.int32)

        mh.precision.set_policy(_Unused, "params=float32,compute=bfloat16,output=float32")
        with self.assertRaisesRegex(mh.MismatchError, "~/w"):
            mh.transform(g).init(0)

    def test_policy_param_dtype_is_what_apply_checks_against(self):
        mh.precision.set_policy(mh.nn.Linear, "params=bfloat16,compute=float32,output=float32")
        f = mh.transform(lambda x: mh.nn.Linear(3)(x))
        x = jnp.ones((1, 2))
        params = f.init(0, x)
        self.assertEqual(params["~/Linear_0/__call__/w"].dtype, jnp.bfloat16)
        self.assertEqual(f.apply(params, None, x).dtype, jnp.float32)
        wrong = dict(params, **{"~/Linear_0/__call__/w": params["~/Linear_0/__call__/w"]
                               .astype(jnp.float16)})
        with self.assertRaisesRegex(mh.MismatchError, "bfloat16"):
            f.apply(wrong, None, x)


class _Annotated(mh.Module):
    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], 8), init=jax.nn.initializers.zeros,
                         axes=("embed", "mlp"))
        return x @ w


class LogicalAxesKeptTest(absltest.TestCase):
    """Items 2 and 3: axes survive interceptors, policies and mh.lift."""

    def tearDown(self):
        mh.precision.clear_policies()
        super().tearDown()

    def _axes_with(self, context):
        def f(x):
            with context():
                return _Annotated()(x)
        return mh.sharding.logical_axes(mh.transform(f).init, 0, jnp.ones((2, 4)))

    def test_axes_with_getter_creator_and_policy(self):
        want = {"~/_Annotated_0/__call__/w": ("embed", "mlp")}
        self.assertEqual(self._axes_with(lambda: mh.custom_getter(_noop_getter)), want)
        self.assertEqual(self._axes_with(lambda: mh.custom_creator(
            lambda nxt, s, d, i, ctx: nxt(s, d, i))), want)
        mh.precision.set_policy(_Unused, "params=float32,compute=bfloat16,output=float32")
        self.assertEqual(self._axes_with(lambda: mh.custom_getter(_noop_getter)), want)

    def test_axes_length_checked_with_getter(self):
        def f(x):
            with mh.custom_getter(_noop_getter):
                return mh.get_param("w", (2, 3), axes=("embed",))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "axes"):
            mh.transform(f).init(0, jnp.ones(2))

    def test_lifted_params_keep_axes_under_outer_path(self):
        inner = mh.transform(lambda x: _Annotated()(x))

        def f(x):
            params = mh.lift(inner.init, name="pre")(None, x)
            return inner.apply(params, None, x)

        axes = mh.sharding.logical_axes(mh.transform(f).init, 0, jnp.ones((2, 4)))
        self.assertEqual(axes, {"~/pre/_Annotated_0/__call__/w": ("embed", "mlp")})

    def test_axes_inside_layer_stack_and_policy(self):
        mh.precision.set_policy(_Annotated, "params=float32,compute=float32,output=float32")

        def f(x):
            return mh.lifted.layer_stack(2)(lambda x: _Annotated()(x)[..., :4])(x)

        axes = mh.sharding.logical_axes(mh.transform(f).init, 0, jnp.ones((2, 4)))
        self.assertEqual(axes, {"~/_Annotated_0/__call__/w": ("embed", "mlp")})
        rules = [mh.sharding.logical_rules({"embed": None, "mlp": "model"})]
        params = jax.eval_shape(mh.transform(f).init, 0, jnp.ones((2, 4)))
        self.assertEqual(mh.sharding.specs(params, rules, axes=axes),
                         {"~/_Annotated_0/__call__/w": P(None, None, "model")})


class CreatorResultCheckedTest(absltest.TestCase):
    """Item 5: what a creator returns is checked like any creation."""

    def test_wrong_shape_from_creator_is_an_interceptor_error(self):
        def bad(next_creator, shape, dtype, init, ctx):
            return jnp.zeros((1,), dtype)

        def f(x):
            with mh.custom_creator(bad):
                return mh.nn.Linear(3)(x)

        with self.assertRaisesRegex(mh.InterceptorError, r"Linear_0/__call__/w.*\(2, 3\)"):
            mh.transform(f).init(0, jnp.ones((1, 2)))

    def test_wrong_dtype_from_state_creator(self):
        def bad(next_creator, shape, dtype, init, ctx):
            return next_creator(shape, dtype, init).astype(jnp.int32)

        def f():
            with mh.custom_creator(bad, params=False, state=True):
                return mh.get_state("s", (2,), init=jnp.zeros)

        with self.assertRaisesRegex(mh.InterceptorError, "~/s"):
            mh.transform_with_state(f).init(None)

    def test_shape_not_a_tuple_with_creator_is_a_clear_error(self):
        def f():
            with mh.custom_creator(lambda nxt, s, d, i, ctx: nxt(s, d, i)):
                return mh.get_param("w", 3)

        with self.assertRaisesRegex(mh.InvalidArgumentError, "shape must be a tuple"):
            mh.transform(f).init(0)


class PolicyRefusedBeforeChangeTest(absltest.TestCase):
    """Item 6 and the raw precision errors."""

    def tearDown(self):
        mh.precision.clear_policies()
        super().tearDown()

    def test_failed_set_policy_keeps_the_old_one(self):
        good = mh.precision.Policy.parse("params=float32,compute=bfloat16,output=float32")
        mh.precision.set_policy("enc", good)
        with self.assertRaises(mh.InvalidArgumentError):
            mh.precision.set_policy("enc", 123)
        self.assertEqual(mh.precision.get_policy("enc"), good)

    def test_bad_regex_is_refused(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "not a valid regex"):
            mh.precision.set_policy("([", "params=float32")

    def test_integer_param_dtype_refused_at_parse(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "int8 is not a floating"):
            mh.precision.Policy.parse("params=int8")


class _Codebook(mh.Module):
    """A straight port of Haiku's read-in-a-property, write-in-__call__ pattern."""

    @property
    def value(self):
        return mh.get_state("v", (2,), init=jnp.zeros)

    def __call__(self, x):
        v = self.value
        mh.set_state("v", v + x)
        return v


class StateOwnedByModuleTest(absltest.TestCase):
    """Item 7: state belongs to the module, as in Haiku."""

    def test_read_in_property_written_in_call_is_one_entry(self):
        f = mh.transform_with_state(lambda x: _Codebook()(x))
        x = jnp.ones(2)
        params, state = f.init(None, x)
        self.assertEqual(list(state), ["~/_Codebook_0/v"])
        _, state = f.apply(params, state, None, x)
        _, state = f.apply(params, state, None, x)
        np.testing.assert_array_equal(state["~/_Codebook_0/v"], [2.0, 2.0])

    def test_name_scope_inside_a_method_scopes_state(self):
        class M(mh.Module):
            def __call__(self):
                with mh.name_scope("block"):
                    return mh.get_state("s", (), init=jnp.zeros)

        _, state = mh.transform_with_state(lambda: M()()).init(None)
        self.assertEqual(list(state), ["~/M_0/block/s"])


class MultiTransformRuleTest(absltest.TestCase):
    """Item 8: the template's init makes every param; entries never shape one."""

    @staticmethod
    def _actor_critic():
        def f():
            actor, critic = mh.nn.Linear(2, name="actor"), mh.nn.Linear(1, name="critic")

            def template(obs):
                return actor(obs)

            def q(obs, act):
                return critic(jnp.concatenate([obs, act], -1))

            return template, {"actor": actor, "critic": q}
        return f

    def test_entry_the_template_never_calls_is_missing_in_apply(self):
        init, apply = mh.multi_transform(self._actor_critic())
        obs = jnp.ones((1, 3))
        params = init(0, obs)
        self.assertEqual(sorted(params), ["~/actor_0/__call__/b", "~/actor_0/__call__/w"])
        with self.assertRaisesRegex(mh.MissingParamError,
                                    r"(?s)fns\['critic'\].*critic_0.*template"):
            apply["critic"](params, None, obs, jnp.ones((1, 2)))

    def test_untouched_dropout_entry_needs_no_rng_in_init(self):
        def f():
            lin = mh.nn.Linear(2, w_init=jax.nn.initializers.zeros)

            def noisy(x):
                return mh.nn.dropout(0.5, lin(x))

            return lin, {"plain": lin, "noisy": noisy}

        init, apply = mh.multi_transform(f)
        params = init(None, jnp.ones((1, 3)))
        out = apply["noisy"](params, 1, jnp.ones((1, 3)))
        self.assertEqual(out.shape, (1, 2))

    def test_without_apply_rng_takes_multi_transformed(self):
        def f():
            lin = mh.nn.Linear(2)
            return lin, {"a": lin}

        for transformed in (mh.multi_transform(f), mh.multi_transform_with_state(f)):
            t = mh.without_apply_rng(transformed)
            self.assertIsInstance(t, type(transformed))
            x = jnp.ones((1, 3))
            out = t.init(0, x)
            if isinstance(t, mh.MultiTransformedWithState):
                params, state = out
                y, _ = t.apply["a"](params, state, x)
            else:
                y = t.apply["a"](out, x)
            self.assertEqual(y.shape, (1, 2))


class LiftTest(absltest.TestCase):
    def test_two_default_named_lifts_do_not_share(self):
        inner = mh.transform(lambda x: mh.nn.Linear(2)(x))

        def f(x):
            a = mh.lift(inner.init)(mh.next_rng_key(), x)
            b = mh.lift(inner.init)(mh.next_rng_key(), x)
            return inner.apply(a, None, x) + inner.apply(b, None, x)

        params = mh.transform(f).init(0, jnp.ones((1, 3)))
        self.assertEqual(sorted(params), [
            "~/lifted_0/Linear_0/__call__/b", "~/lifted_0/Linear_0/__call__/w",
            "~/lifted_1/Linear_0/__call__/b", "~/lifted_1/Linear_0/__call__/w"])
        self.assertFalse(np.allclose(params["~/lifted_0/Linear_0/__call__/w"],
                                     params["~/lifted_1/Linear_0/__call__/w"]))

    def test_lift_with_state_round_trip(self):
        inner = mh.transform_with_state(lambda x: mh.nn.BatchNorm(0.5)(x, True))

        def f(x):
            lifted, updater = mh.lift_with_state(inner.init, name="bn")
            params, state = lifted(None, x)
            out, state = inner.apply(params, state, None, x)
            updater.update(state)
            return out

        outer = mh.transform_with_state(f)
        x = jnp.arange(6.0).reshape(3, 2)
        params, state = outer.init(0, x)
        self.assertTrue(all(p.startswith("~/bn/") for p in (*params, *state)))
        _, new_state = outer.apply(params, state, None, x)
        # Compared against the inner transform run on its own.
        ip, istate = inner.init(None, x)
        _, want = inner.apply(ip, istate, None, x)
        for path, value in want.items():
            np.testing.assert_allclose(new_state["~/bn" + path[1:]], value)


class ArchitectureTest(absltest.TestCase):
    """The layering the pipeline relies on, checked on the source."""

    CORE = ("frame", "interceptors", "params", "state", "rng", "_transform", "module",
            "checks", "scopes", "_lift", "_multi_transform", "errors", "init_shapes",
            "config")
    FEATURES = ("nn", "nets", "sharding", "precision", "interop", "peft")

    def _imports(self, path):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                yield node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    yield a.name, []

    def test_core_never_imports_a_feature(self):
        files = [_LIB / f"{name}.py" for name in self.CORE] + sorted((_LIB / "lifted").glob("*.py"))
        for path in files:
            for module, names in self._imports(path):
                for feature in self.FEATURES:
                    imported = (module == f"minihaiku.{feature}"
                                or module.startswith(f"minihaiku.{feature}.")
                                or (module == "minihaiku" and feature in names))
                    self.assertFalse(imported, f"{path.name} imports the feature {feature}")

    def test_at_most_two_thread_local_stores(self):
        found = [str(p.relative_to(_LIB)) for p in _LIB.rglob("*.py")
                 if "threading.local" in p.read_text()]
        self.assertLessEqual(len(found), 2, found)

    def test_no_file_is_shadowed_by_the_function_it_exports(self):
        for package in (mh, mh.lifted, mh.nn):
            for name in package.__all__:
                if not callable(getattr(package, name)) or isinstance(getattr(package, name), type):
                    continue
                try:
                    module = importlib.import_module(f"{package.__name__}.{name}")
                except ModuleNotFoundError:
                    continue
                self.fail(f"{package.__name__}.{name} is both a function and the file "
                          f"{module.__file__}")

    def test_is_eager_still_tells_eager_from_traced(self):
        from minihaiku import frame
        self.assertTrue(frame.is_eager())
        seen = []
        jax.jit(lambda x: seen.append(frame.is_eager()) or x)(1.0)
        jax.vmap(lambda x: seen.append(frame.is_eager()) or x)(jnp.ones(2))
        self.assertEqual(seen, [False, False])

    def test_interceptors_are_per_frame_not_per_thread(self):
        inner = mh.transform(lambda x: mh.nn.Linear(2)(x))
        seen = []

        def getter(next_getter, value, ctx):
            seen.append(ctx.path)
            return next_getter(value)

        def f(x):
            params = mh.lift(inner.init, name="in")(mh.next_rng_key(), x)
            with mh.custom_getter(getter):
                return inner.apply(params, None, x)

        mh.transform(f).init(0, jnp.ones((1, 3)))
        self.assertEqual(seen, [])  # the inner apply is another run

    def test_policy_set_in_one_thread_applies_to_runs_started_after(self):
        f = mh.transform(lambda x: mh.nn.Linear(2)(x))
        out = {}

        def run():
            out["dtype"] = f.init(0, jnp.ones((1, 3)))["~/Linear_0/__call__/w"].dtype

        mh.precision.set_policy(mh.nn.Linear, "params=bfloat16")
        try:
            t = threading.Thread(target=run)
            t.start()
            t.join()
        finally:
            mh.precision.clear_policies()
        self.assertEqual(out["dtype"], jnp.bfloat16)


class RawErrorsTest(absltest.TestCase):
    """Errors that were raw JAX or Python errors."""

    def test_layer_stack_body_returning_a_pair(self):
        def f(x):
            return mh.lifted.layer_stack(2)(lambda x: (mh.nn.Linear(3)(x), x))(x)

        with self.assertRaisesRegex(mh.LiftedBodyError,
                                    "layer_stack.*with_per_layer_inputs=True"):
            mh.transform(f).init(0, jnp.ones((1, 3)))

    def test_sharding_rule_naming_a_mesh_axis_twice(self):
        mesh = mh.sharding.mesh("model:1")
        with self.assertRaisesRegex(mh.ShardingError, r"'~/w'.*more than one dimension"):
            mh.sharding.shardings({"~/w": jnp.ones((2, 2))}, [("w", P("model", "model"))],
                                  mesh)

    def test_unconstrained_refused_for_params(self):
        mesh = mh.sharding.mesh("model:1")
        with self.assertRaisesRegex(mh.ShardingError, r"'~/w'.*UNCONSTRAINED"):
            mh.sharding.shardings({"~/w": jnp.ones((2, 2))},
                                  [("w", P(P.UNCONSTRAINED, None))], mesh)

    def test_mesh_size_true_refused(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "not bools"):
            mh.sharding.mesh({"data": True})

    def test_cond_branch_mismatch_named_before_jax(self):
        def f(x):
            return mh.lifted.cond(x.sum() > 0, lambda x: x, lambda x: x[:1], x)

        with self.assertRaisesRegex(mh.LiftedBodyError, "(?s)branch 0.*branch 1"):
            mh.transform(f).init(0, jnp.ones(2))

    def test_vmap_sizes_checked_before_jax(self):
        def f(x, y):
            return mh.lifted.vmap(lambda a, b: a + b, split_rng=False)(x, y)

        with self.assertRaisesRegex(mh.InvalidArgumentError, r"size 2.*size 3|size 3.*size 2"):
            mh.transform(f).init(0, jnp.ones(2), jnp.ones(3))


class DeadCodeTest(absltest.TestCase):
    def test_no_alias_next(self):
        self.assertFalse(hasattr(mh.PRNGSequence, "next"))
        source = (_LIB / "lifted" / "_keys.py").read_text()
        self.assertIsNone(re.search(r"def take|next = __next__", source))


if __name__ == "__main__":
    absltest.main()
