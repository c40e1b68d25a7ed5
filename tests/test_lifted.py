"""mh.lifted: each lifted transform against plain JAX with explicit params."""

import concurrent.futures

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh

L = mh.lifted
normal = jax.nn.initializers.normal(1.0)


class Linear(mh.Module):
    """A test-local Linear (no mh.nn): params 'w' [in, out] and 'b' [out]."""

    def __init__(self, size, name=None):
        super().__init__(name=name)
        self.size = size

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size), init=normal)
        b = mh.get_param("b", (self.size,), init=normal)
        return x @ w + b


def lin(params, prefix, x):
    """The reference: Linear by hand with explicit params."""
    return x @ params[f"{prefix}/w"] + params[f"{prefix}/b"]


def shapes(tree):
    return {k: tuple(v.shape) for k, v in tree.items()}


def assert_close(a, b, **kw):
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                rtol=kw.get("rtol", 2e-4),
                                                atol=kw.get("atol", 1e-5)), a, b)


def assert_all_distinct(test, keys):
    data = np.asarray(jax.random.key_data(keys) if jnp.issubdtype(
        keys.dtype, jax.dtypes.prng_key) else keys).reshape(len(keys), -1)
    test.assertLen({tuple(row) for row in data}, len(keys))


def jgrad(f):
    """``jax.grad`` under ``jax.jit``: one compile instead of one per op (fast tests)."""
    return jax.jit(jax.grad(f))


X = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)


class OutsideTransformTest(parameterized.TestCase):

    @parameterized.parameters(
        ("remat", lambda: L.remat(jnp.sin)(1.0), "jax.checkpoint"),
        ("scan", lambda: L.scan(lambda c, x: (c, x), 0.0, jnp.ones(2)), "jax.lax.scan"),
        ("layer_stack", lambda: L.layer_stack(2)(jnp.sin)(1.0), "jax.lax.scan"),
        ("vmap", lambda: L.vmap(jnp.sin, split_rng=False)(jnp.ones(2)), "jax.vmap"),
        ("cond", lambda: L.cond(True, jnp.sin, jnp.cos, 1.0), "jax.lax.cond"),
        ("switch", lambda: L.switch(0, [jnp.sin], 1.0), "jax.lax.switch"),
        ("fori_loop", lambda: L.fori_loop(0, 2, lambda i, x: x, 1.0), "jax.lax.fori_loop"),
        ("while_loop", lambda: L.while_loop(lambda x: x < 1, lambda x: x + 1, 0.0),
         "jax.lax.while_loop"),
    )
    def test_error_names_jax_equivalent(self, name, call, jax_name):
        with self.assertRaises(mh.NotInTransformError) as cm:
            call()
        self.assertIn(f"mh.lifted.{name}", str(cm.exception))
        self.assertIn(jax_name, str(cm.exception))

    def test_exports(self):
        self.assertCountEqual(L.__all__, ["cond", "switch", "layer_stack", "fori_loop",
                                          "while_loop", "remat", "scan", "vmap", "grad", "value_and_grad",
                                          "eager_cache"])


def _mlp_blocks(use_remat, depth=8, block=4, width=32):
    def f(x):
        def run_block(x):
            for _ in range(block):
                x = jnp.tanh(Linear(width)(x))
            return x
        wrapped = L.remat(run_block) if use_remat else run_block
        for _ in range(depth // block):
            x = wrapped(x)
        return jnp.sum(x ** 2)
    return mh.transform(f)


def _mlp_reference(params, x, depth=8):
    for i in range(depth):
        x = jnp.tanh(lin(params, f"~/Linear_{i}/__call__", x))
    return jnp.sum(x ** 2)


class RematTest(parameterized.TestCase):

    def test_init_paths_values_and_grads_match_reference(self):
        plain, remat = _mlp_blocks(False), _mlp_blocks(True)
        x = jax.random.normal(jax.random.PRNGKey(1), (16, 32))
        params = remat.init(0, x)
        plain_params = plain.init(0, x)
        self.assertEqual(list(params), list(plain_params))  # creation order kept
        for path in params:  # remat(f) creates exactly f's params
            np.testing.assert_array_equal(params[path], plain_params[path])
        want, want_g = jax.value_and_grad(_mlp_reference)(params, x)
        got, got_g = jax.value_and_grad(lambda p: remat.apply(p, None, x))(params)
        assert_close(got, want)
        # Gradients are O(100) here: float32 noise on near-zero entries needs
        # an absolute tolerance on that scale.
        assert_close(got_g, want_g, atol=1e-4)
        got_jit = jax.jit(jax.grad(lambda p: remat.apply(p, None, x)))(params)
        assert_close(got_jit, want_g, atol=1e-4)

    def test_keys_drawn_inside_equal_keys_drawn_without_remat(self):
        def noisy(x):
            return x + jax.random.normal(mh.next_rng_key(), x.shape)

        def f(remat):
            def g(x):
                for _ in range(10):  # 20 keys: crosses a block boundary of the sequence
                    x = (L.remat(noisy) if remat else noisy)(x)
                    x = x + jax.random.normal(mh.next_rng_key(), x.shape)
                return x
            return mh.transform(g).apply

        x = jnp.zeros((2, 3))
        for seed in (0, 1):
            assert_close(f(True)({}, seed, x), f(False)({}, seed, x))
        self.assertFalse(np.allclose(f(True)({}, 0, x), f(True)({}, 1, x)))

    def test_saved_residuals_shrink(self):
        x = jnp.ones((128, 64))
        params = _mlp_blocks(True, width=64).init(0, x)

        def residual_bytes(use_remat):
            apply = _mlp_blocks(use_remat, width=64).apply
            _, vjp = jax.vjp(lambda p: apply(p, None, x), params)
            return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(vjp))

        self.assertLess(residual_bytes(True), 0.5 * residual_bytes(False))

    def test_state_rng_and_static_argnums(self):
        def block(x, double):
            n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
            mh.set_state("n", n + 1)
            x = Linear(3)(x)
            return (2 * x if double else x), mh.next_rng_key()

        def f(x):
            y, k1 = L.remat(block, static_argnums=1)(x, True)
            return y, k1, mh.next_rng_key()

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (3, 3),
                                          "~/Linear_0/__call__/b": (3,)})
        self.assertEqual(dict(state), {"~/n": 0})
        (y, k1, k2), state = apply(params, state, 1, X)
        self.assertEqual(int(state["~/n"]), 1)
        assert_close(y, 2 * lin(params, "~/Linear_0/__call__", X))
        assert_all_distinct(self, jnp.stack([k1, k2]))


class ScanTest(parameterized.TestCase):

    @staticmethod
    def _rnn(reverse=False):
        def f(xs):
            cell_in, cell_h = Linear(5), Linear(5, name="hidden")

            def step(h, x):
                n = mh.get_state("steps", (), jnp.int32, init=jnp.zeros)
                mh.set_state("steps", n + 1)
                h = jnp.tanh(cell_in(x) + cell_h(h))
                return h, (h, mh.next_rng_key())

            return L.scan(step, jnp.zeros((xs.shape[1], 5)), xs, reverse=reverse)
        return mh.transform_with_state(f)

    @staticmethod
    def _reference(params, xs, reverse=False):
        def step(h, x):
            h = jnp.tanh(lin(params, "~/Linear_0/__call__", x)
                         + lin(params, "~/hidden_0/__call__", h))
            return h, h
        return jax.lax.scan(step, jnp.zeros((xs.shape[1], 5)), xs, reverse=reverse)

    @parameterized.parameters(False, True)
    def test_values_state_keys_match_reference(self, reverse):
        xs = jax.random.normal(jax.random.PRNGKey(0), (6, 2, 3))
        init, apply = self._rnn(reverse)
        params, state = init(0, xs)
        # Shared across steps: no leading time axis.
        self.assertEqual(shapes(params), {
            "~/Linear_0/__call__/w": (3, 5), "~/Linear_0/__call__/b": (5,),
            "~/hidden_0/__call__/w": (5, 5), "~/hidden_0/__call__/b": (5,)})
        self.assertEqual(dict(state), {"~/steps": 0})
        (h, (hs, keys)), new_state = apply(params, state, 1, xs)
        want_h, want_hs = self._reference(params, xs, reverse)
        assert_close(h, want_h)
        assert_close(hs, want_hs)
        self.assertEqual(int(new_state["~/steps"]), 6)
        assert_all_distinct(self, keys)
        # jit gives the same; the input state was not mutated.
        (h_jit, _), _ = jax.jit(apply)(params, state, 1, xs)
        assert_close(h_jit, want_h)
        self.assertEqual(int(state["~/steps"]), 0)

    def test_grad_matches_reference(self):
        xs = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 3))
        init, apply = self._rnn()
        params, state = init(0, xs)
        got = jgrad(lambda p: jnp.sum(apply(p, state, 1, xs)[0][0] ** 2))(params)
        want = jgrad(lambda p: jnp.sum(self._reference(p, xs)[0] ** 2))(params)
        assert_close(got, want)

    def test_length_zero(self):
        init, apply = self._rnn()
        xs = jnp.zeros((0, 2, 3))
        params, state = init(0, xs)
        self.assertLen(params, 4)
        (h, (hs, _)), state = apply(params, state, 1, xs)
        assert_close(h, jnp.zeros((2, 5)))
        self.assertEqual(hs.shape, (0, 2, 5))
        self.assertEqual(int(state["~/steps"]), 0)

    def test_xs_none_with_length_and_modules_built_in_body(self):
        def f(x):
            def step(c, _):
                return Linear(3)(c), None   # built inside: same params every step
            return L.scan(step, x, None, length=3)[0]

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b"])
        want = X
        for _ in range(3):
            want = lin(params, "~/Linear_0/__call__", want)
        assert_close(apply(params, None, X), want, rtol=1e-4)

    def test_retrace_on_weak_carry_keeps_module_names(self):
        # A weakly typed int carry (0) that becomes float makes lax.scan trace
        # the body twice.
        def f(xs):
            return L.scan(lambda c, x: (c + jnp.sum(Linear(1)(x)), None), 0, xs)[0]

        init, apply = mh.transform(f)
        xs = jnp.ones((3, 2, 3))
        params = init(0, xs)
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b"])
        assert_close(apply(params, None, xs),
                     3 * jnp.sum(lin(params, "~/Linear_0/__call__", xs[0])))

    def test_init_output_equals_apply_output(self):
        xs = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 3))
        seen = []

        def f(xs):
            def step(h, x):
                h = jnp.tanh(Linear(5)(x) + h) + jax.random.normal(mh.next_rng_key(), h.shape)
                return h, h
            out = L.scan(step, jnp.zeros((2, 5)), xs)
            seen.append(out)
            return out

        init, apply = mh.transform(f)
        params = init(7, xs)
        assert_close(seen[0], apply(params, 7, xs))

    def test_trains_a_recurrent_cell(self):
        xs = jax.random.normal(jax.random.PRNGKey(0), (5, 8, 3))
        target = jnp.sin(jnp.cumsum(xs[..., :1], axis=0))

        def f(xs):
            cell_in, cell_h, readout = Linear(8), Linear(8), Linear(1)

            def step(h, x):
                h = jnp.tanh(cell_in(x) + cell_h(h))
                return h, readout(h)

            return L.scan(step, jnp.zeros((xs.shape[1], 8)), xs)[1]

        init, apply = mh.without_apply_rng(mh.transform(f))
        params = init(0, xs)

        def loss(p):
            return jnp.mean((apply(p, xs) - target) ** 2)

        def ref_loss(p):
            def step(h, x):
                h = jnp.tanh(lin(p, "~/Linear_0/__call__", x) + lin(p, "~/Linear_1/__call__", h))
                return h, lin(p, "~/Linear_2/__call__", h)
            return jnp.mean((jax.lax.scan(step, jnp.zeros((8, 8)), xs)[1] - target) ** 2)

        @jax.jit
        def sgd(p):
            return jax.tree_util.tree_map(lambda w, g: w - 0.05 * g, p, jax.grad(loss)(p))

        assert_close(jgrad(loss)(params), jax.grad(ref_loss)(params))
        first = jax.jit(loss)(params)
        for _ in range(3):
            params = sgd(params)
        self.assertLess(float(jax.jit(loss)(params)), float(first))


class LayerStackTest(parameterized.TestCase):

    @staticmethod
    def _layer(x, scale, *, shift):
        n = mh.get_state("calls", (), jnp.int32, init=jnp.zeros)
        mh.set_state("calls", n + 1)
        mh.set_state("last_mean", jnp.mean(x))
        return jnp.tanh(Linear(3)(x) * scale + shift)

    def test_stacked_params_state_and_reference(self):
        def f(x):
            return L.layer_stack(4)(self._layer)(x, 0.5, shift=0.1)

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (4, 3, 3),
                                          "~/Linear_0/__call__/b": (4, 3)})
        self.assertEqual(shapes(state), {"~/calls": (4,), "~/last_mean": (4,)})
        # Each layer initialised from a different key.
        w = np.asarray(params["~/Linear_0/__call__/w"])
        self.assertLen({w[i].tobytes() for i in range(4)}, 4)
        out, new_state = apply(params, state, None, X)
        # Reference: the layers one by one, each with its slice of the params.
        want, means = X, []
        for i in range(4):
            sliced = {k: v[i] for k, v in params.items()}
            means.append(jnp.mean(want))
            want = jnp.tanh(lin(sliced, "~/Linear_0/__call__", want) * 0.5 + 0.1)
        assert_close(out, want)
        np.testing.assert_array_equal(new_state["~/calls"], np.ones(4, np.int32))
        assert_close(new_state["~/last_mean"], jnp.stack(means))
        out_jit, _ = jax.jit(apply)(params, state, None, X)
        assert_close(out_jit, want)
        grad = jgrad(lambda p: jnp.sum(apply(p, state, None, X)[0]))(params)
        want_grad = jgrad(lambda p: jnp.sum(self._reference(p, 4)))(params)
        assert_close(grad, want_grad)

    @staticmethod
    def _reference(params, n):
        x = X
        for i in range(n):
            x = jnp.tanh(lin({k: v[i] for k, v in params.items()}, "~/Linear_0/__call__",
                             x) * 0.5 + 0.1)
        return x

    def test_one_scan_independent_of_depth(self):
        def jaxpr(n):
            f = mh.transform_with_state(
                lambda x: L.layer_stack(n)(self._layer)(x, 0.5, shift=0.1))
            params, state = f.init(0, X)
            return jax.make_jaxpr(f.apply)(params, state, None, X).jaxpr

        small, big = jaxpr(2), jaxpr(64)
        self.assertEqual([e.primitive.name for e in small.eqns],
                         [e.primitive.name for e in big.eqns])
        self.assertEqual([e.primitive.name for e in big.eqns].count("scan"), 1)

    def test_keys_per_layer_and_two_stacks_get_distinct_paths(self):
        def f(x):
            noisy = L.layer_stack(3)(lambda x: Linear(3)(x) + jax.random.normal(
                mh.next_rng_key(), x.shape))
            return noisy(noisy(x) * 0)  # each call builds its own Linear

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(list(shapes(params).items()), [
            ("~/Linear_0/__call__/w", (3, 3, 3)), ("~/Linear_0/__call__/b", (3, 3)),
            ("~/Linear_1/__call__/w", (3, 3, 3)), ("~/Linear_1/__call__/b", (3, 3))])
        a, b = jax.jit(apply)(params, 1, X), jax.jit(apply)(params, 2, X)
        self.assertFalse(np.allclose(a, b))

    def test_param_shared_with_outside_is_an_error(self):
        def f(x):
            layer = Linear(3)
            x = layer(x)
            return L.layer_stack(2)(layer)(x)

        with self.assertRaisesRegex(mh.MiniHaikuError, "per-layer"):
            mh.transform(f).init(0, X)

    def test_bad_num_layers(self):
        with self.assertRaises(mh.MiniHaikuError):
            L.layer_stack(0)


class VmapTest(parameterized.TestCase):

    def test_params_broadcast_values_and_grads(self):
        def f(xs):
            return L.vmap(lambda x: jnp.tanh(Linear(2)(x)), split_rng=False)(xs)

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (3, 2),
                                          "~/Linear_0/__call__/b": (2,)})

        def ref(p):
            return jax.vmap(lambda x: jnp.tanh(lin(p, "~/Linear_0/__call__", x)))(X)

        assert_close(apply(params, None, X), ref(params))
        assert_close(jgrad(lambda p: jnp.sum(apply(p, None, X) ** 2))(params),
                     jgrad(lambda p: jnp.sum(ref(p) ** 2))(params))

    @parameterized.parameters(True, False)
    def test_split_rng_in_init_and_apply(self, split):
        seen = []

        def f(xs):
            keys = L.vmap(lambda x: (Linear(2)(x), mh.next_rng_key())[1],
                          split_rng=split)(xs)
            seen.append(keys)
            return keys

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(shapes(params)["~/Linear_0/__call__/w"], (3, 2))
        for keys in (seen[0], apply(params, 1, X)):
            if split:
                assert_all_distinct(self, keys)
            else:
                np.testing.assert_array_equal(keys, jnp.broadcast_to(keys[0], keys.shape))

    def test_in_axes_out_axes_and_state(self):
        def f(xs, y):
            def g(x, y):
                n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
                mh.set_state("n", n + 1)
                return Linear(2)(x) + y
            return L.vmap(g, in_axes=(1, None), out_axes=1, split_rng=False)(xs, y)

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X.T, 1.0)
        out, state = apply(params, state, None, X.T, 1.0)
        assert_close(out, (lin(params, "~/Linear_0/__call__", X) + 1.0).T)
        self.assertEqual(int(state["~/n"]), 1)

    def test_unmapped_python_value_reaches_the_function_as_is(self):
        def f(xs):
            def g(x, negate):
                return -Linear(2)(x) if negate else Linear(2)(x)   # Python control flow
            return L.vmap(g, in_axes=(0, None), split_rng=False)(xs, True)

        init, apply = mh.transform(f)
        params = init(0, X)
        assert_close(apply(params, None, X), -lin(params, "~/Linear_0/__call__", X))

    def test_state_depending_on_example_is_an_error_naming_the_path(self):
        def f(xs):
            mh.set_state("shared", jnp.zeros(()))

            def g(x):
                mh.set_state("shared", jnp.ones(()))
                mh.set_state("s", x)
                return x

            return L.vmap(g, split_rng=False)(xs)

        with self.assertRaisesRegex(mh.MiniHaikuError,
                                    r"vmap: \['~/s'\] created or set .* depend on the mapped"):
            mh.transform_with_state(f).init(0, X)


class CondSwitchTest(parameterized.TestCase):

    @staticmethod
    def _branches():
        def a(x):
            mh.set_state("taken", jnp.int32(0))
            return Linear(2)(x)

        def b(x):
            mh.set_state("taken", jnp.int32(1))
            return 2.0 * Linear(2)(x) + jax.random.normal(mh.next_rng_key(), (2,))

        def c(x):
            mh.set_state("taken", jnp.int32(2))
            return jnp.ones((x.shape[0], 2))
        return a, b, c

    @parameterized.parameters(True, False)
    def test_cond_creates_all_params_runs_taken_branch(self, pred):
        a, b, _ = self._branches()
        init, apply = mh.transform_with_state(lambda x, p: L.cond(p, a, b, x))
        params, state = init(0, X, pred)
        self.assertEqual(list(params), ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b",
                                        "~/Linear_1/__call__/w", "~/Linear_1/__call__/b"])
        out, state = apply(params, state, 1, X, pred)
        self.assertEqual(int(state["~/taken"]), 0 if pred else 1)
        if pred:
            assert_close(out, lin(params, "~/Linear_0/__call__", X))
        else:
            noise = out - 2.0 * lin(params, "~/Linear_1/__call__", X)
            assert_close(noise, jnp.broadcast_to(noise[0], noise.shape))
        out_jit, _ = jax.jit(apply)(params, state, 1, X, pred)
        assert_close(out_jit, out)

    @parameterized.parameters(0, 1, 2, 5)
    def test_switch(self, index):
        init, apply = mh.transform_with_state(
            lambda x, i: L.switch(i, self._branches(), x))
        params, state = init(0, X, index)
        self.assertLen(params, 4)
        _, state = jax.jit(apply)(params, state, 1, X, index)
        self.assertEqual(int(state["~/taken"]), min(index, 2))

    def test_grad_through_cond(self):
        a, _, c = self._branches()
        init, apply = mh.transform_with_state(lambda x: L.cond(True, a, c, x))
        params, state = init(0, X)
        grad = jgrad(lambda p: jnp.sum(apply(p, state, None, X)[0]))(params)
        want = jgrad(lambda p: jnp.sum(lin(p, "~/Linear_0/__call__", X)))(params)
        assert_close(grad, want)


class LoopsTest(parameterized.TestCase):

    def test_fori_loop(self):
        def f(x):
            layer = Linear(3)

            def body(i, x):
                n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
                mh.set_state("n", n + i)
                mh.set_state("key", mh.next_rng_key())
                return jnp.tanh(layer(x) + Linear(3, name="inner")(x))
            return L.fori_loop(0, 4, body, x)

        init, apply = mh.transform_with_state(f)
        params, state = init(0, X)
        self.assertEqual(sorted(shapes(params)), sorted([
            "~/Linear_0/__call__/w", "~/Linear_0/__call__/b",
            "~/inner_0/__call__/w", "~/inner_0/__call__/b"]))
        out, new_state = apply(params, state, 1, X)
        want = X
        for _ in range(4):
            want = jnp.tanh(lin(params, "~/Linear_0/__call__", want)
                            + lin(params, "~/inner_0/__call__", want))
        assert_close(out, want)
        self.assertEqual(int(new_state["~/n"]), 0 + 1 + 2 + 3)
        _, other = apply(params, state, 2, X)
        self.assertFalse(np.array_equal(new_state["~/key"], other["~/key"]))
        grad = jgrad(lambda p: jnp.sum(apply(p, state, 1, X)[0]))(params)
        self.assertEqual(shapes(grad), shapes(params))

    def test_while_loop_keys_differ_per_step(self):
        def f():
            def cond(c):
                return c[0] < 3

            def body(c):
                i, keys = c
                mh.set_state("bias_sum", mh.get_state("bias_sum") + Linear(1)(jnp.ones((1, 1))))
                return i + 1, keys.at[i].set(mh.next_rng_key())

            mh.set_state("bias_sum", jnp.zeros((1, 1)))
            keys = jnp.zeros((3,) + jax.random.PRNGKey(0).shape, jnp.uint32)
            return L.while_loop(cond, body, (0, keys))[1]

        init, apply = mh.transform_with_state(f)
        params, state = init(0)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (1, 1),
                                          "~/Linear_0/__call__/b": (1,)})
        keys, state = apply(params, state, 1)
        assert_all_distinct(self, keys)
        assert_close(state["~/bias_sum"],
                     3 * lin(params, "~/Linear_0/__call__", jnp.ones((1, 1))))

    def test_while_cond_may_not_set_state(self):
        def f(x):
            def cond(x):
                mh.set_state("s", x)
                return x < 3
            return L.while_loop(cond, lambda x: x + 1, x)

        with self.assertRaisesRegex(mh.MiniHaikuError, "cond_fun set state"):
            mh.transform_with_state(f).init(0, 0)


def _touch_param(x):
    return x * mh.get_param("w", x.shape[-1:], init=jax.nn.initializers.ones)


def _touch_state(x):
    mh.set_state("s", jnp.sum(x))
    return x


def _touch_rng(x):
    return x + jax.random.normal(mh.next_rng_key(), x.shape)


# raw JAX transform -> (wrapper, words the error must contain to point to the fix).
RAW = {
    "jit": (lambda g: lambda x: jax.jit(g)(x), ["jax.jit(apply)"]),
    "vmap": (lambda g: lambda x: jax.vmap(g)(x), ["mh.lifted", "vmap"]),
    "scan": (lambda g: lambda x: jax.lax.scan(lambda c, x: (c, g(x)), 0.0, x)[1],
             ["mh.lifted.scan"]),
    "checkpoint": (lambda g: lambda x: jax.checkpoint(g)(x), ["mh.lifted", "remat"]),
    "grad": (lambda g: lambda x: jax.grad(lambda x: jnp.sum(g(x)))(x), ["jax.grad"]),
    "cond": (lambda g: lambda x: jax.lax.cond(True, g, lambda x: x, x),
             ["mh.lifted", "cond"]),
}


class UnliftedTransformTest(parameterized.TestCase):

    @parameterized.product(raw=list(RAW), touch=["param", "state", "rng"],
                           phase=["init", "apply"])
    def test_raw_transform_is_refused(self, raw, touch, phase):
        if touch == "param" and phase == "apply":
            return self._check_param_read_allowed(raw)
        wrap, hint = RAW[raw]
        inner = {"param": _touch_param, "state": _touch_state, "rng": _touch_rng}[touch]
        init, apply = mh.transform_with_state(wrap(inner))
        params = {"~/w": jnp.ones(3)}
        state = {"~/s": jnp.zeros(())}
        with self.assertRaises(mh.UnliftedTransformError) as cm:
            if phase == "init":
                init(0, X)
            else:
                apply(params, state, 0, X)
        for word in hint:
            self.assertIn(word, str(cm.exception))
        # The failed call left no frame behind.
        self.assertFalse(mh.inside_transform())

    def _check_param_read_allowed(self, raw):
        # Reading an existing param in apply is harmless under a raw transform
        # (the value is only closed over), so the core allows it.
        wrap, _ = RAW[raw]
        apply = mh.transform(wrap(_touch_param)).apply
        params = {"~/w": jnp.full((3,), 2.0)}
        assert_close(apply(params, None, X), wrap(lambda x: 2.0 * x)(X))

    def test_lifted_function_inside_raw_transform_is_refused(self):
        def f(x):
            return jax.jit(lambda x: L.remat(_touch_param)(x))(x)

        with self.assertRaises(mh.UnliftedTransformError):
            mh.transform(f).init(0, X)

    @parameterized.parameters(list(RAW))
    def test_raw_transform_around_pure_code_is_allowed(self, raw):
        wrap, _ = RAW[raw]

        def f(x):
            y = _touch_param(x)
            return wrap(jnp.sin)(y)

        init, apply = mh.transform(f)
        params = init(0, X)
        assert_close(apply(params, None, X), wrap(jnp.sin)(X))

    @parameterized.parameters(list(RAW))
    def test_raw_transform_around_other_apply_is_allowed(self, raw):
        wrap, _ = RAW[raw]
        inner = mh.transform(_touch_param)
        inner_params = {"~/w": jnp.full((3,), 2.0)}

        def f(x):
            return wrap(lambda x: inner.apply(inner_params, None, x))(x) + _touch_param(x)

        init, apply = mh.transform(f)
        params = init(0, X)
        want = wrap(lambda x: 2.0 * x)(X) + X
        assert_close(apply(params, None, X), want)


def _noisy(x):
    return x + jax.random.normal(mh.next_rng_key(), x.shape)


CONSISTENT = {
    "remat": lambda x: L.remat(_noisy)(x),
    "scan": lambda x: L.scan(lambda c, x: (_noisy(c), None), x, None, length=2)[0],
    "layer_stack": lambda x: L.layer_stack(2)(_noisy)(x),
    "vmap_split": lambda x: L.vmap(_noisy, split_rng=True)(x),
    "vmap": lambda x: L.vmap(_noisy, split_rng=False)(x),
    "cond": lambda x: L.cond(True, _noisy, lambda x: 2 * _noisy(x), x),
    "switch": lambda x: L.switch(1, [_noisy, lambda x: 2 * _noisy(x)], x),
    "fori_loop": lambda x: L.fori_loop(0, 2, lambda i, x: _noisy(x), x),
    "while_loop": lambda x: L.while_loop(lambda c: c[0] < 2,
                                         lambda c: (c[0] + 1, _noisy(c[1])), (0, x))[1],
}


class InitApplyConsistencyTest(parameterized.TestCase):

    @parameterized.parameters(list(CONSISTENT))
    def test_init_forward_equals_apply_with_same_rng(self, name):
        # Init and apply take keys alike, so a body drawing keys (and creating
        # no params, which would take keys in init only) computes the same.
        seen = []

        def f(x):
            out = CONSISTENT[name](x)
            seen.append(out)
            return out

        init, apply = mh.transform(f)
        params = init(3, X)
        assert_close(seen[0], apply(params, 3, X))
        self.assertFalse(np.allclose(seen[0], apply(params, 4, X)))


def everything(x):
    """Every lifted transform once, with params, state and keys."""
    x = L.remat(lambda x: jnp.tanh(Linear(3)(x)))(x)

    def cell(h, x):
        n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
        mh.set_state("n", n + 1)
        return jnp.tanh(Linear(3)(x) + Linear(3)(h)), mh.next_rng_key()

    x, _ = L.scan(cell, x, jnp.ones((2,) + x.shape))
    x = L.layer_stack(2)(lambda x: jnp.tanh(Linear(3)(x)) + mh.get_state(
        "s", (), init=jnp.ones))(x)
    x = L.vmap(lambda x: Linear(3)(x) + jax.random.normal(mh.next_rng_key(), (3,)),
               split_rng=True)(x)
    x = L.cond(jnp.sum(x) > 0, lambda x: Linear(3)(x), lambda x: 2 * Linear(3)(x), x)
    x = L.switch(1, [lambda x: Linear(3)(x), lambda x: -Linear(3)(x)], x)
    x = L.fori_loop(0, 2, lambda i, x: jnp.tanh(Linear(3)(x)), x)
    return L.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, Linear(3)(c[1])), (0, x))[1]


class EverythingTest(absltest.TestCase):

    def test_jit_init_is_bit_for_bit_eager_init_and_jvp_runs(self):
        init, apply = mh.transform_with_state(everything)
        params, state = init(0, X)
        self.assertLen(params, 2 * 11)
        jit_params, jit_state = jax.jit(init)(0, X)
        jax.tree_util.tree_map(np.testing.assert_array_equal, (jit_params, jit_state),
                               (params, state))
        out, _ = apply(params, state, 1, X)
        # Forward mode: while_loop has no reverse mode.
        tangent = jax.tree_util.tree_map(jnp.ones_like, params)
        primal_out, tangent_out = jax.jit(lambda p, t: jax.jvp(
            lambda p: apply(p, state, 1, X)[0], (p,), (t,)))(params, tangent)
        assert_close(primal_out, out)
        self.assertEqual(tangent_out.shape, out.shape)


    def test_disable_jit_gives_the_same_params_and_outputs(self):
        # Under jax.disable_jit, lax.switch runs only the taken branch: module
        # names (of the branches and of what follows) must not change.
        def g(x):
            x = L.cond(jnp.sum(x) > 100, lambda x: Linear(3)(x), lambda x: 2 * Linear(3)(x), x)
            x = L.switch(2, [lambda x: Linear(3)(x)] * 3, x)
            return L.scan(lambda c, x: (Linear(3)(c), None), x, None, length=2)[0]

        init, apply = mh.transform_with_state(g)
        params, state = init(0, X)
        out, new_state = apply(params, state, 1, X)
        with jax.disable_jit():
            params_nojit, _ = init(0, X)
            out_nojit, state_nojit = apply(params, state, 1, X)
        self.assertEqual(list(params_nojit), list(params))
        assert_close(params_nojit, params)
        assert_close(out_nojit, out)
        assert_close(state_nojit, new_state)


class EagerCacheTest(absltest.TestCase):

    def test_eager_calls_reuse_the_compiled_computation_with_fresh_values(self):
        from minihaiku.lifted import _eager_cache

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
        assert_close(apply(p2, None, xs, 0.5), ref(p2, 0.5))  # new params, same program
        self.assertEqual(len(_eager_cache._CACHE), cached)
        assert_close(apply(p2, None, xs, 2.0), ref(p2, 2.0))  # another literal

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


class ReviewRegressionTest(absltest.TestCase):

    def test_read_only_params_mapping_works_with_lifted_ops(self):
        import types

        f = mh.transform(lambda x: L.scan(lambda c, _: (Linear(3)(c), None), x, None,
                                          length=2)[0])
        params = f.init(0, X)
        assert_close(f.apply(types.MappingProxyType(params), None, X), f.apply(params, None, X))

    def test_cond_branches_see_state_created_by_earlier_branches(self):
        def a(x):
            mh.set_state("s", jnp.sum(x))
            return x

        def b(x):
            return x + mh.get_state("s")

        init, apply = mh.transform_with_state(lambda x: L.cond(jnp.sum(x) > 0, a, b, x))
        params, state = init(0, X)
        self.assertEqual(list(state), ["~/s"])
        out, _ = apply(params, {"~/s": jnp.asarray(5.0)}, None, -X)
        assert_close(out, -X + 5.0)

    def test_while_cond_fun_drawing_a_key_is_a_clear_error(self):
        def f(x):
            return L.while_loop(
                lambda c: c < jax.random.uniform(mh.next_rng_key()) + 2,
                lambda c: c + 1.0, x)

        with self.assertRaisesRegex(mh.MiniHaikuError, "cond_fun drew a random key"):
            mh.transform(f).apply({}, 0, 0.0)


class NestingTest(absltest.TestCase):

    def test_typed_key_and_running_init_inside_bodies(self):
        def f(xs):
            def step(c, x):
                flags.append(mh.running_init())
                return c, jax.random.key_data(mh.next_rng_key())
            keys = L.scan(step, 0.0, xs)[1]
            per_example = L.vmap(lambda x: jax.random.key_data(mh.next_rng_key()),
                                 split_rng=True)(xs)
            return keys, per_example

        flags = []
        init, apply = mh.transform(f)
        init(jax.random.key(0), X)
        self.assertTrue(flags and all(flags))
        flags.clear()
        keys, per_example = apply({}, jax.random.key(1), X)
        self.assertFalse(any(flags))
        assert_all_distinct(self, keys)
        assert_all_distinct(self, per_example)

    def test_state_under_plain_transform_is_refused_inside_bodies(self):
        def f(x):
            return L.scan(lambda c, x: (mh.get_state("s", (), init=jnp.zeros), x), 0.0, x)

        with self.assertRaises(mh.StateNotAllowedError):
            mh.transform(f).init(0, X)
        self.assertFalse(mh.inside_transform())

    def test_scan_of_remat_inside_vmap_matches_reference(self):
        def f(xs):
            def per_example(x):
                layer = Linear(3)

                def step(c, _):
                    return L.remat(lambda c: jnp.tanh(layer(c)))(c), None
                return L.scan(step, x, None, length=3)[0]
            return L.vmap(per_example, split_rng=False)(xs)

        init, apply = mh.transform(f)
        params = init(0, X)
        self.assertEqual(shapes(params), {"~/Linear_0/__call__/w": (3, 3),
                                          "~/Linear_0/__call__/b": (3,)})

        def ref(p):
            x = X
            for _ in range(3):
                x = jnp.tanh(lin(p, "~/Linear_0/__call__", x))
            return x

        assert_close(apply(params, None, X), ref(params))
        assert_close(jgrad(lambda p: jnp.sum(apply(p, None, X)))(params),
                     jgrad(lambda p: jnp.sum(ref(p)))(params))


if __name__ == "__main__":
    absltest.main()
