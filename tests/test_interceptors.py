"""Interceptors: custom creators, getters, setters and method interceptors.

Each use is checked against hand-written JAX with the params made explicit.
"""

import functools
import re
import threading

import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

import helpers
import minihaiku as mh
from helpers import Linear
from minihaiku import frame as frame_lib
from minihaiku import interceptors

normal = jax.nn.initializers.normal(1.0)
zeros = jax.nn.initializers.zeros
X = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
KEY = jax.random.PRNGKey(0)


def two_layers(x):
    h = jnp.tanh(Linear(3)(x))
    return Linear(2)(h)


def reference(params, x):
    p = "~/Linear_0/__call__/"
    q = "~/Linear_1/__call__/"
    h = jnp.tanh(x @ params[p + "w"] + params[p + "b"])
    return h @ params[q + "w"] + params[q + "b"]


def quantise(v):
    return jnp.round(v * 4) / 4


assert_close = functools.partial(helpers.assert_close, atol=1e-6)


class GetterTest(parameterized.TestCase):

    def test_quantise_on_read_equals_quantised_params_by_hand(self):
        def f(x):
            with mh.custom_getter(lambda nxt, v, ctx: nxt(quantise(v))):
                return two_layers(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        # Stored params are not quantised; only reads are.
        self.assertFalse(all(bool(jnp.all(quantise(v) == v)) for v in params.values()))
        quantised = {k: quantise(v) for k, v in params.items()}
        assert_close(apply(params, None, X), reference(quantised, X))

    def test_weight_noise_getter_draws_keys_and_matches_reference(self):
        scale = 0.1

        def noisy(nxt, v, ctx):
            return nxt(v + scale * jax.random.normal(mh.next_rng_key(), v.shape))

        def f(x):
            with mh.custom_getter(noisy):
                return two_layers(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        rng = jax.random.PRNGKey(7)
        out = apply(params, rng, X)
        # By hand: the same key sequence, one key per read, in read order.
        seq = mh.PRNGSequence(rng)
        order = ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b",
                 "~/Linear_1/__call__/w", "~/Linear_1/__call__/b"]
        noisy_params = {p: params[p] + scale * jax.random.normal(next(seq), params[p].shape)
                        for p in order}
        assert_close(out, reference(noisy_params, X))
        self.assertGreater(float(jnp.abs(out - apply(params, jax.random.PRNGKey(8), X)).max()),
                           1e-4)

    def test_freezing_by_path_zeroes_exactly_the_frozen_grads(self):
        frozen = re.compile(r"Linear_0/")

        def freeze(nxt, v, ctx):
            return nxt(jax.lax.stop_gradient(v) if frozen.search(ctx.path) else v)

        def f(x):
            with mh.custom_getter(freeze):
                return two_layers(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        grads = jax.grad(lambda p: jnp.sum(apply(p, None, X) ** 2))(params)
        ref = jax.grad(lambda p: jnp.sum(reference(p, X) ** 2))(params)
        for path, g in grads.items():
            if "Linear_0" in path:
                self.assertEqual(float(jnp.abs(g).max()), 0.0, path)
            else:
                assert_close(g, ref[path])
                self.assertGreater(float(jnp.abs(g).max()), 0.0)

    def test_getter_sees_full_path_module_and_method(self):
        seen = []

        def record(nxt, v, ctx):
            seen.append((ctx.path, ctx.name, type(ctx.module).__name__,
                         ctx.module.module_path, ctx.method_name))
            return nxt(v)

        def f(x):
            with mh.custom_getter(record):
                return Linear(3)(x)

        mh.transform(f).init(KEY, X)
        self.assertEqual(seen, [
            ("~/Linear_0/__call__/w", "w", "Linear", "~/Linear_0", "__call__"),
            ("~/Linear_0/__call__/b", "b", "Linear", "~/Linear_0", "__call__")])

    def test_getter_at_top_level_has_no_module(self):
        seen = []

        def f():
            with mh.custom_getter(lambda nxt, v, ctx: seen.append(ctx) or nxt(v)):
                return mh.get_param("w", (2,), init=zeros)

        mh.transform(f).init(None)
        self.assertEqual(seen, [interceptors.Context("~/w", "w", None, None)])

    def test_nested_getters_run_innermost_first(self):
        order = []

        def tag(name):
            def getter(nxt, v, ctx):
                order.append(name)
                return nxt(v * 10 + (1 if name == "inner" else 2))
            return getter

        def f():
            with mh.custom_getter(tag("outer")):
                with mh.custom_getter(tag("inner")):
                    return mh.get_param("w", (), init=zeros)

        out = mh.transform(f).init(None)
        self.assertEqual(order, ["inner", "outer"])
        params, value = out, None
        value = mh.transform(f).apply(params, None)
        self.assertEqual(float(value), (0 * 10 + 1) * 10 + 2)

    def test_state_getter_only_when_asked(self):
        def f():
            with mh.custom_getter(lambda nxt, v, ctx: nxt(v + 1), state=True, params=False):
                s = mh.get_state("s", (), init=jnp.zeros)
                p = mh.get_param("p", (), init=zeros)
            return s, p

        init, apply = mh.transform_with_state(f)
        params, state = init(None)
        (s, p), _ = apply(params, state, None)
        self.assertEqual((float(s), float(p)), (1.0, 0.0))


class CreatorTest(absltest.TestCase):

    def test_creator_changes_init_and_sees_request(self):
        seen = []

        def zeros(nxt, shape, dtype, init, ctx):
            seen.append((ctx.path, shape, jnp.dtype(dtype).name))
            return nxt(shape, dtype, jax.nn.initializers.zeros)

        def f(x):
            with mh.custom_creator(zeros):
                return Linear(3)(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        self.assertEqual(seen, [("~/Linear_0/__call__/w", (4, 3), "float32"),
                                ("~/Linear_0/__call__/b", (3,), "float32")])
        for v in params.values():
            self.assertEqual(float(jnp.abs(v).max()), 0.0)
        seen.clear()
        assert_close(apply(params, None, X), jnp.zeros((3, 3)))
        self.assertEqual(seen, [], "creators run only when a value is created")

    def test_creator_return_value_is_stored(self):
        def f():
            with mh.custom_creator(lambda nxt, s, d, i, ctx: nxt(s, d, i) + 5.0):
                return mh.get_param("w", (2,), init=zeros)

        params = mh.transform(f).init(None)
        assert_close(params["~/w"], jnp.full((2,), 5.0))

    def test_nested_creators_run_innermost_first(self):
        order = []

        def tag(name):
            def creator(nxt, shape, dtype, init, ctx):
                order.append(name)
                return nxt(shape, dtype, init)
            return creator

        def f():
            with mh.custom_creator(tag("outer")), mh.custom_creator(tag("inner")):
                mh.get_param("w", (), init=zeros)

        mh.transform(f).init(None)
        self.assertEqual(order, ["inner", "outer"])

    def test_lora_creator_and_getter_against_hand_written_lora(self):
        rank = 2

        def lora_creator(nxt, shape, dtype, init, ctx):
            value = nxt(shape, dtype, init)
            if ctx.name == "w":  # low-rank factors beside w
                mh.get_param("lora_a", (shape[0], rank), dtype, normal)
                mh.get_param("lora_b", (rank, shape[1]), dtype, jax.nn.initializers.zeros)
            return value

        def lora_getter(nxt, value, ctx):
            if ctx.name == "w":
                a = mh.get_param("lora_a", (value.shape[0], rank))
                b = mh.get_param("lora_b", (rank, value.shape[1]))
                value = value + a @ b
            return nxt(value)

        def f(x):
            with mh.custom_creator(lora_creator), mh.custom_getter(lora_getter):
                return two_layers(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        self.assertEqual(
            {k: v.shape for k, v in params.items() if "lora" in k},
            {"~/Linear_0/__call__/lora_a": (4, rank), "~/Linear_0/__call__/lora_b": (rank, 3),
             "~/Linear_1/__call__/lora_a": (3, rank), "~/Linear_1/__call__/lora_b": (rank, 2)})
        # Train only the LoRA factors: change b, check against w + a @ b by hand.
        params = {k: (v + 0.3 if k.endswith("lora_b") else v) for k, v in params.items()}

        def by_hand(p, x):
            merged = dict(p)
            for layer in ("~/Linear_0/__call__/", "~/Linear_1/__call__/"):
                merged[layer + "w"] = p[layer + "w"] + p[layer + "lora_a"] @ p[layer + "lora_b"]
            return reference(merged, x)

        assert_close(apply(params, None, X), by_hand(params, X))
        grads = jax.grad(lambda p: jnp.sum(apply(p, None, X)))(params)
        ref = jax.grad(lambda p: jnp.sum(by_hand(p, X)))(params)
        for k in params:
            assert_close(grads[k], ref[k])

    def test_state_creator_when_asked(self):
        def ones(nxt, shape, dtype, init, ctx):
            return nxt(shape, dtype, jnp.ones)

        def f():
            with mh.custom_creator(ones, params=False, state=True):
                return mh.get_state("s", (2,), init=jnp.zeros)

        _, state = mh.transform_with_state(f).init(None)
        assert_close(state["~/s"], jnp.ones(2))

    def test_creator_returning_a_non_array_is_refused(self):
        def f():
            with mh.custom_creator(lambda *a: "oops"):
                mh.get_param("w", (2,))

        with self.assertRaisesRegex(mh.InterceptorError, "'~/w'"):
            mh.transform(f).init(KEY)


class SetterTest(absltest.TestCase):

    def test_setter_clips_and_sees_path(self):
        seen = []

        def clip(nxt, value, ctx):
            seen.append(ctx.path)
            return nxt(jnp.clip(value, -1.0, 1.0))

        def f(x):
            n = mh.get_state("n", (), init=jnp.zeros)
            with mh.custom_setter(clip):
                mh.set_state("n", n + x)
            return n

        init, apply = mh.transform_with_state(f)
        params, state = init(None, 0.0)
        _, state = apply(params, state, None, 5.0)
        self.assertEqual(float(state["~/n"]), 1.0)
        self.assertEqual(seen, ["~/n", "~/n"])


class MethodInterceptorTest(absltest.TestCase):

    def test_logs_every_method_call_with_its_path(self):
        log = []

        def record(method, args, kwargs, ctx):
            log.append((ctx.path, ctx.method_name, type(ctx.module).__name__))
            return method(*args, **kwargs)

        def f(x):
            with mh.intercept_methods(record):
                return mh.nn.MLP([3, 2])(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        log.clear()
        out = apply(params, None, X)
        self.assertEqual(log, [("~/MLP_0", "__call__", "MLP"),
                               ("~/MLP_0/__call__/Linear_0", "__call__", "Linear"),
                               ("~/MLP_0/__call__/Linear_1", "__call__", "Linear")])
        assert_close(out, mh.transform(lambda x: mh.nn.MLP([3, 2])(x)).apply(params, None, X))

    def test_interceptor_can_change_args_and_output(self):
        def double_in_negate_out(method, args, kwargs, ctx):
            return -method(args[0] * 2, *args[1:], **kwargs)

        def f(x):
            with mh.intercept_methods(double_in_negate_out):
                return Linear(3)(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        p = "~/Linear_0/__call__/"
        assert_close(apply(params, None, X), -((2 * X) @ params[p + "w"] + params[p + "b"]))

    def test_nested_method_interceptors_run_innermost_first(self):
        order = []

        def tag(name):
            def interceptor(method, args, kwargs, ctx):
                order.append(name)
                return method(*args, **kwargs)
            return interceptor

        def f(x):
            with mh.intercept_methods(tag("outer")), mh.intercept_methods(tag("inner")):
                return Linear(3)(x)

        mh.transform(f).init(KEY, X)
        self.assertEqual(order, ["inner", "outer"])


class LiftedTest(parameterized.TestCase):
    """Interceptors hold inside every lifted transform."""

    def test_layer_stack_getter_sees_one_layer_slice_with_its_path(self):
        seen = []

        def record(nxt, v, ctx):
            seen.append((ctx.path, v.shape))
            return nxt(v * 0.5)

        def f(x):
            with mh.custom_getter(record):
                return mh.lifted.layer_stack(3)(lambda x: jnp.tanh(Linear(4)(x)))(x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        self.assertEqual(params["~/Linear_0/__call__/w"].shape, (3, 4, 4))
        self.assertIn(("~/Linear_0/__call__/w", (4, 4)), seen)
        seen.clear()
        out = apply(params, None, X)
        self.assertEqual(sorted(set(seen)), [("~/Linear_0/__call__/b", (4,)),
                                             ("~/Linear_0/__call__/w", (4, 4))])
        h = X
        for i in range(3):
            h = jnp.tanh(h @ (params["~/Linear_0/__call__/w"][i] * 0.5)
                         + params["~/Linear_0/__call__/b"][i] * 0.5)
        assert_close(out, h)

    @parameterized.named_parameters(
        ("scan", lambda body, x: mh.lifted.scan(lambda c, _: (body(c), None), x, None,
                                                length=2)[0]),
        ("cond", lambda body, x: mh.lifted.cond(True, body, body, x)),
        ("remat", lambda body, x: mh.lifted.remat(body)(x)),
        ("vmap", lambda body, x: mh.lifted.vmap(body, split_rng=False)(x)),
    )
    def test_getter_creator_and_methods_hold_inside(self, lifted):
        paths, methods = [], []

        def getter(nxt, v, ctx):
            paths.append(ctx.path)
            return nxt(v * 2)

        def creator(nxt, shape, dtype, init, ctx):
            return nxt(shape, dtype, jax.nn.initializers.ones)

        def interceptor(method, args, kwargs, ctx):
            methods.append(ctx.path)
            return method(*args, **kwargs)

        def f(x):
            with (mh.custom_getter(getter), mh.custom_creator(creator),
                  mh.intercept_methods(interceptor)):
                return lifted(lambda x: Linear(4)(x), x)

        init, apply = mh.transform(f)
        params = init(KEY, X)
        for v in params.values():
            assert_close(v, jnp.ones_like(v))
        paths.clear()
        methods.clear()
        out = apply(params, None, X)
        self.assertIn("~/Linear_0/__call__/w", paths)
        self.assertIn("~/Linear_0", methods)
        step = lambda x: x @ (2 * params["~/Linear_0/__call__/w"]) + 2  # noqa: E731
        expected = step(step(X)) if "scan" in self._testMethodName else step(X)
        assert_close(out, expected)


class ScopeTest(absltest.TestCase):

    def test_needs_a_transform(self):
        with self.assertRaises(mh.NotInTransformError):
            with mh.custom_getter(lambda nxt, v, ctx: nxt(v)):
                pass

    def test_non_callable_is_refused(self):
        def f():
            with mh.custom_getter("not a function"):
                pass

        with self.assertRaisesRegex(mh.InterceptorError, "expects a function"):
            mh.transform(f).init(None)

    def test_hooks_switch_off_after_the_block_even_on_error(self):
        seen = []

        def f():
            with mh.custom_getter(lambda nxt, v, ctx: nxt(v)):
                seen.append(frame_lib.frames()[-1].hooks)
                raise KeyError("boom")

        def g():
            seen.append(frame_lib.frames()[-1].hooks)
            return mh.nn.Linear(2)(jnp.ones((1, 2)))

        with self.assertRaises(KeyError):
            mh.transform(f).init(None)
        mh.transform(g).init(0)
        self.assertIsNotNone(seen[0])
        self.assertIsNone(seen[1])  # an eager run with nothing registered: the fast path

    def test_other_threads_do_not_see_this_threads_interceptors(self):
        inside, results = threading.Event(), {}
        release = threading.Event()

        def intercepted():
            def f():
                with mh.custom_getter(lambda nxt, v, ctx: nxt(v + 100.0)):
                    inside.set()
                    release.wait(10)
                    return mh.get_param("w", (), init=zeros)
            results["intercepted"] = float(mh.transform(f).apply({"~/w": jnp.float32(1)}, None))

        thread = threading.Thread(target=intercepted)
        thread.start()
        inside.wait(10)
        plain = mh.transform(lambda: mh.get_param("w", (), init=zeros))
        results["plain"] = float(plain.apply({"~/w": jnp.float32(1)}, None))
        release.set()
        thread.join()
        self.assertEqual(results, {"intercepted": 101.0, "plain": 1.0})


if __name__ == "__main__":
    absltest.main()
