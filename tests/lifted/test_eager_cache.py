"""The eager executable cache: reused only for the same computation, never wrong."""

import concurrent.futures
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers.subprocess_env import subprocess_env
from lifted.common import L, Linear, X, assert_close, lin
from minihaiku.lifted import _eager_cache

# Every JAX flag that changes how a jaxpr prints (jax 0.10.2).
_PRINT_FLAGS = [
    ("simplified_constants", "jax_use_simplified_jaxpr_constants", True),
    ("default_constants", "jax_use_simplified_jaxpr_constants", False),
    ("color", "jax_pprint_use_color", True),
    ("no_color", "jax_pprint_use_color", False),
    ("debug_info", "jax_include_debug_info_in_dumps", True),
    ("no_debug_info", "jax_include_debug_info_in_dumps", False),
]


class _Flag:
    def __init__(self, name, value):
        self.name, self.value = name, value

    def __enter__(self):
        self.was = jax.config.values[self.name]
        jax.config.update(self.name, self.value)

    def __exit__(self, *exc):
        jax.config.update(self.name, self.was)


def _fori_adding(c):
    return mh.transform(lambda x: L.fori_loop(0, 1, lambda i, v: v + c, x))


def _scan_adding(c):
    return mh.transform(lambda x: L.scan(lambda h, _: (h + c, None), x, None, length=2)[0])


class ComputationKeyedUnderPrintFlagsTest(parameterized.TestCase):

    @parameterized.named_parameters(*_PRINT_FLAGS)
    def test_closures_over_different_constants_get_their_own_results(self, flag, value):
        with _Flag(flag, value):
            for c in (np.array([1., 2., 3.]), np.array([10., 20., 30.]),
                      jnp.array([5., 6., 7.])):
                assert_close(_fori_adding(c).apply({}, None, jnp.zeros(3)), c)
                assert_close(_scan_adding(c).apply({}, None, jnp.zeros(3)), 2 * c)
            for c in (2.0, 3.0, 3):
                assert_close(_fori_adding(c).apply({}, None, jnp.zeros(3)), jnp.full(3, c))

    @parameterized.named_parameters(*_PRINT_FLAGS)
    def test_nested_jit_constants_are_compared_by_value(self, flag, value):
        with _Flag(flag, value):
            for table in (jnp.array([1., 2., 3.]), jnp.array([100., 200., 300.])):
                add_table = jax.jit(lambda h, table=table: h + table)
                t = mh.transform(lambda x, add=add_table: L.scan(
                    lambda c, _: (jax.jit(lambda c: add(c))(c), None), x, None, length=1)[0])
                assert_close(t.apply({}, None, jnp.zeros(3)), table)
                assert_close(jax.jit(t.apply)({}, None, jnp.zeros(3)), table)


class CacheReuseTest(absltest.TestCase):

    def test_same_computation_with_new_params_reuses_one_executable(self):
        def f(xs, scale):
            layer = Linear(3)
            return L.scan(lambda c, x: (jnp.tanh(layer(x) * scale + c),) * 2,
                          jnp.zeros(3), xs)[1]

        init, apply = mh.transform(f)
        xs = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
        p1, p2 = init(0, xs, 1.0), init(1, xs, 1.0)

        def ref(p, scale):
            def step(c, x):
                c = jnp.tanh(lin(p, "~/Linear_0/__call__", x) * scale + c)
                return c, c
            return jax.lax.scan(step, jnp.zeros(3), xs)[1]

        assert_close(apply(p1, None, xs, 0.5), ref(p1, 0.5))
        cached = len(_eager_cache._CACHE)
        assert_close(apply(p2, None, xs, 0.5), ref(p2, 0.5))
        self.assertEqual(len(_eager_cache._CACHE), cached)
        assert_close(apply(p2, None, xs, 2.0), ref(p2, 2.0))  # another literal: new entry

    def test_custom_jvp_functions_share_despite_fresh_rule_closures(self):
        t = mh.transform(lambda x: L.fori_loop(0, 2, lambda i, v: jax.nn.relu(v - 1.0), x))
        t.apply({}, None, X)
        cached = len(_eager_cache._CACHE)
        assert_close(t.apply({}, None, X + 3.0), jnp.maximum(jnp.maximum(X + 2.0, 0) - 1.0, 0))
        self.assertEqual(len(_eager_cache._CACHE), cached)

    def test_keys_equal_for_equal_computations_and_differ_for_different_literals(self):
        def key(c, x):
            return _eager_cache.computation_key(jax.make_jaxpr(lambda v: v * c + 1.0)(x).jaxpr)

        self.assertEqual(key(2.0, jnp.ones(3)), key(2.0, jnp.zeros(3)))
        self.assertNotEqual(key(2.0, jnp.ones(3)), key(3.0, jnp.ones(3)))
        self.assertNotEqual(key(2.0, jnp.ones(3)), key(2.0, jnp.ones(4)))
        # Array constants are passed in as consts (equal keys), or inlined as
        # literals under simplified constants (compared by value).
        self.assertEqual(key(np.array([1., 2.]), jnp.ones(2)),
                         key(np.array([1., 3.]), jnp.ones(2)))
        with _Flag("jax_use_simplified_jaxpr_constants", True):
            self.assertNotEqual(key(np.array([1., 2.]), jnp.ones(2)),
                                key(np.array([1., 3.]), jnp.ones(2)))

    def test_constants_too_large_to_compare_are_not_cached_but_correct(self):
        big = np.arange(300_000, dtype=np.float32)  # 1.2 MB, over the budget
        t = mh.transform(lambda x: L.fori_loop(0, 1, lambda i, v: v + big[:3], x))
        before = len(_eager_cache._CACHE)
        assert_close(t.apply({}, None, jnp.zeros(3)), big[:3])
        with _Flag("jax_use_simplified_jaxpr_constants", True):
            big2 = big + 1
            t2 = mh.transform(lambda x: L.fori_loop(0, 1, lambda i, v: v + big2[:3] * 0 + big2[:3],
                                                    x))
            assert_close(t2.apply({}, None, jnp.zeros(3)), big2[:3])
        self.assertLessEqual(len(_eager_cache._CACHE), before + 2)


class CallbacksAndEffectsTest(absltest.TestCase):

    def test_callbacks_are_told_apart_by_identity(self):
        def with_callback(fn):
            def body(i, v):
                return jax.pure_callback(fn, jax.ShapeDtypeStruct((3,), jnp.float32), v)
            return mh.transform(lambda x: L.fori_loop(0, 1, body, x))

        plus_one = lambda v: np.asarray(v + 1, np.float32)  # noqa: E731
        times_ten = lambda v: np.asarray((v + 1) * 10, np.float32)  # noqa: E731
        assert_close(with_callback(plus_one).apply({}, None, jnp.zeros(3)), jnp.ones(3))
        assert_close(with_callback(times_ten).apply({}, None, jnp.zeros(3)), jnp.full(3, 10.))
        assert_close(with_callback(plus_one).apply({}, None, jnp.ones(3)), jnp.full(3, 2.))

    def test_ordered_effects_run_at_every_call(self):
        seen = []

        def body(c, x):
            jax.debug.callback(lambda v: seen.append(float(v)), x, ordered=True)
            return c + x, None

        t = mh.transform(lambda xs: L.scan(body, 0.0, xs)[0])
        self.assertEqual(float(t.apply({}, None, jnp.arange(3.0))), 3.0)
        self.assertEqual(float(t.apply({}, None, jnp.arange(3.0) + 10)), 33.0)
        jax.effects_barrier()
        self.assertEqual(seen, [0.0, 1.0, 2.0, 10.0, 11.0, 12.0])


class OffSwitchTest(absltest.TestCase):

    def test_disabled_cache_adds_nothing_and_gives_the_same_results(self):
        t = _scan_adding(np.array([4., 5., 6.]))
        want = t.apply({}, None, jnp.ones(3))
        _eager_cache.clear()
        with L.eager_cache(False):
            assert_close(t.apply({}, None, jnp.ones(3)), want)
            self.assertEmpty(_eager_cache._CACHE)
        t.apply({}, None, jnp.ones(3))
        self.assertLen(_eager_cache._CACHE, 1)

    def test_environment_variable_turns_it_off(self):
        code = ("import minihaiku as mh, jax.numpy as jnp\n"
                "from minihaiku.lifted import _eager_cache as c\n"
                "t = mh.transform(lambda x: mh.lifted.fori_loop(0, 1, lambda i, v: v + 1, x))\n"
                "t.apply({}, None, jnp.zeros(2))\n"
                "print(c._SETTINGS.enabled, len(c._CACHE))\n")
        env = subprocess_env(MINIHAIKU_EAGER_CACHE="0", JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=120)
        self.assertEqual(out.stdout.split(), ["False", "0"])


class NestedJitAndThreadsTest(absltest.TestCase):

    def test_constants_of_a_nested_jit_are_never_baked_in(self):
        def model(table):
            add_table = jax.jit(lambda h: h + table)  # its constant prints as a type only
            return mh.transform(
                lambda x: L.scan(lambda c, _: (add_table(c), None), x, None, length=1)[0])

        for table in (jnp.array([1., 2., 3.]), jnp.array([100., 200., 300.])):
            t = model(table)
            assert_close(t.apply({}, None, jnp.zeros(3)), table)
            assert_close(jax.jit(t.apply)({}, None, jnp.zeros(3)), table)

    def test_threads_give_the_same_results_as_one_after_another(self):
        def f(x):
            x = L.scan(lambda c, _: (jnp.tanh(Linear(3)(c)), None), x, None, length=3)[0]
            return L.cond(jnp.sum(x) > 0, lambda x: Linear(3)(x), lambda x: -x, x)

        init, apply = mh.transform(f)
        inputs = [X * i for i in range(6)]
        params = init(0, X)
        want = [apply(params, None, x) for x in inputs]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda x: apply(params, None, x), inputs))
        assert_close(got, want)


if __name__ == "__main__":
    absltest.main()
