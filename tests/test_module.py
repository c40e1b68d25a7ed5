"""Module naming and param sharing, incl. property tests."""

import dataclasses
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from hypothesis import given, settings
from hypothesis import strategies as st

import minihaiku as mh


class Linear(mh.Module):

    def __init__(self, size, name=None):
        super().__init__(name=name)
        self.size = size

    def __call__(self, x):
        w = mh.get_param("w", (x.shape[-1], self.size))
        return x @ w


class MLP(mh.Module):

    def __init__(self, sizes, name=None):
        super().__init__(name=name)
        self.sizes = sizes

    def __call__(self, x):
        for s in self.sizes:
            x = jnp.tanh(Linear(s)(x))
        return x


class Embed(mh.Module):

    def __init__(self, vocab, dim):
        super().__init__()
        self.vocab, self.dim = vocab, dim

    def embeddings(self):
        return mh.get_param("embeddings", (self.vocab, self.dim))

    def __call__(self, ids):
        return self.embeddings()[ids]

    def attend(self, x):
        return x @ self.embeddings().T


def _init_paths(f, *args):
    return list(mh.transform(f).init(0, *args))


class NamingTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.x = jnp.ones((2, 3))

    def test_no_decorator_needed_and_custom_names(self):
        def f(x):
            return Linear(2, name="enc")(Linear(3)(x))

        self.assertEqual(_init_paths(f, self.x),
                         ["~/Linear_0/__call__/w", "~/enc_0/__call__/w"])

    def test_same_instance_twice_reuses_submodule_params(self):
        def f(x):
            mlp = MLP([3, 3])
            return mlp(mlp(x))

        self.assertEqual(_init_paths(f, self.x), [
            "~/MLP_0/__call__/Linear_0/__call__/w", "~/MLP_0/__call__/Linear_1/__call__/w"])

    def test_two_instances_never_share(self):
        def f(x):
            return MLP([3])(x) + MLP([3])(x)

        init, apply = mh.transform(f)
        params = init(0, self.x)
        self.assertEqual(list(params), ["~/MLP_0/__call__/Linear_0/__call__/w",
                                        "~/MLP_1/__call__/Linear_0/__call__/w"])
        w0, w1 = params.values()
        self.assertFalse(np.array_equal(w0, w1))
        np.testing.assert_allclose(apply(params, None, self.x),
                                   jnp.tanh(self.x @ w0) + jnp.tanh(self.x @ w1), rtol=1e-6)

    def test_place_is_fixed_at_construction(self):
        class Wrapper(mh.Module):
            def __call__(self, inner, x):
                return inner(x)

        def f(x):
            lin = Linear(3)
            return Wrapper()(lin, x)

        self.assertEqual(_init_paths(f, self.x), ["~/Linear_0/__call__/w"])

    def test_methods_share_params_through_a_public_method(self):
        def f(ids):
            emb = Embed(5, 3)
            return emb.attend(emb(ids))

        init, apply = mh.transform(f)
        ids = jnp.array([0, 4])
        params = init(0, ids)
        self.assertEqual(list(params), ["~/Embed_0/embeddings/embeddings"])
        e = params["~/Embed_0/embeddings/embeddings"]
        np.testing.assert_allclose(apply(params, None, ids), e[ids] @ e.T, rtol=1e-6)

    def test_private_methods_use_caller_scope_and_module_method_is_idempotent(self):
        class M(mh.Module):
            def __call__(self, x):
                return self._helper(x) + self.explicit(x)

            def _helper(self, x):
                return mh.get_param("h", ()) * x

            @mh.module_method
            def explicit(self, x):
                return mh.get_param("e", ()) * x

        self.assertIs(mh.module_method(M.explicit), M.explicit)
        self.assertEqual(_init_paths(lambda x: M()(x), self.x),
                         ["~/M_0/__call__/h", "~/M_0/explicit/e"])

    def test_super_call_keeps_counting(self):
        class Base(mh.Module):
            def __call__(self, x):
                return Linear(3)(x)

        class Child(Base):
            def __call__(self, x):
                return super().__call__(Linear(3)(x))

        self.assertEqual(_init_paths(lambda x: Child()(x), self.x), [
            "~/Child_0/__call__/Linear_0/__call__/w", "~/Child_0/__call__/Linear_1/__call__/w"])

    def test_module_path_and_repr(self):
        seen = []

        def f(x):
            class Probe(mh.Module):
                def __call__(self, x):
                    inner = Linear(2)
                    seen.append((inner.module_name, inner.module_path, repr(inner)))
                    return inner(x)
            return Probe()(x)

        mh.transform(f).init(0, self.x)
        self.assertEqual(seen, [("Linear_0", "~/Probe_0/__call__/Linear_0",
                                 "Linear(~/Probe_0/__call__/Linear_0)")])



class ScopingTest(absltest.TestCase):
    """Properties, generators, __init__ and dataclasses are scoped like methods."""

    def setUp(self):
        super().setUp()
        self.x = jnp.ones((2, 3))

    def test_properties_are_scoped_per_instance(self):
        class M(mh.Module):
            @property
            def w(self):
                return mh.get_param("p", (3,))

            @property
            def size(self):
                return 3

        def f():
            a, b = M(), M()
            return a.w, b.w, a.w

        init, apply = mh.transform(f)
        params = init(0)
        self.assertEqual(list(params), ["~/M_0/w/p", "~/M_1/w/p"])
        wa, wb, wa2 = apply(params, None)
        np.testing.assert_array_equal(wa, params["~/M_0/w/p"])
        np.testing.assert_array_equal(wb, params["~/M_1/w/p"])
        np.testing.assert_array_equal(wa, wa2)
        self.assertFalse(np.array_equal(wa, wb))

    def test_property_reading_configuration_works_outside_a_transform(self):
        class M(mh.Module):
            def __init__(self):
                super().__init__()
                self.n = 4

            @property
            def double(self):
                return 2 * self.n

        built = []
        mh.transform(lambda: built.append(M())).init(None)
        self.assertEqual(built[0].double, 8)

    def test_generator_methods_keep_their_scope_across_resumes(self):
        class Stream(mh.Module):
            def steps(self, x):
                for _ in range(2):
                    x = Linear(3)(x)
                    yield x * mh.get_param("s", ())

        def f(x):
            a, b = Stream(), Stream()
            return list(a.steps(x)) + list(b.steps(x))

        init, apply = mh.transform(f)
        params = init(0, self.x)
        self.assertEqual(list(params), [
            "~/Stream_0/steps/Linear_0/__call__/w", "~/Stream_0/steps/s",
            "~/Stream_0/steps/Linear_1/__call__/w",
            "~/Stream_1/steps/Linear_0/__call__/w", "~/Stream_1/steps/s",
            "~/Stream_1/steps/Linear_1/__call__/w"])
        outs = apply(params, None, self.x)
        w0, s, w1 = (params[f"~/Stream_0/steps/{k}"] for k in
                     ("Linear_0/__call__/w", "s", "Linear_1/__call__/w"))
        np.testing.assert_allclose(outs[0], (self.x @ w0) * s, rtol=1e-6)
        np.testing.assert_allclose(outs[1], (self.x @ w0 @ w1) * s, rtol=1e-6)

    def test_generator_send_and_return_value_pass_through(self):
        class Acc(mh.Module):
            def run(self):
                total = 0.0
                while True:
                    got = yield total
                    if got is None:
                        return total
                    total = total + got * mh.get_param("k", (), init=jax.nn.initializers.ones)

        def f():
            gen = Acc().run()
            next(gen)
            gen.send(2.0)
            gen.send(3.0)
            try:
                gen.send(None)
            except StopIteration as stop:
                return stop.value

        self.assertEqual(float(mh.transform(f).apply({"~/Acc_0/run/k": jnp.ones(())}, None)),
                         5.0)

    def test_submodules_built_in_init_live_under_the_parent(self):
        class Parent(mh.Module):
            def __init__(self, name=None):
                super().__init__(name=name)
                self.proj = Linear(4)
                self.out = Linear(2)

            def __call__(self, x):
                return self.out(self.proj(x))

        def f(x):
            return Parent()(x) + Parent(name="p")(x) + Linear(2)(x)

        init, apply = mh.transform(f)
        params = init(0, self.x)
        self.assertEqual(list(params), [
            "~/Parent_0/__init__/Linear_0/__call__/w", "~/Parent_0/__init__/Linear_1/__call__/w",
            "~/p_0/__init__/Linear_0/__call__/w", "~/p_0/__init__/Linear_1/__call__/w",
            # A sibling is not renumbered by the parents' children.
            "~/Linear_0/__call__/w"])
        p = params
        want = ((self.x @ p["~/Parent_0/__init__/Linear_0/__call__/w"])
                @ p["~/Parent_0/__init__/Linear_1/__call__/w"]
                + (self.x @ p["~/p_0/__init__/Linear_0/__call__/w"])
                @ p["~/p_0/__init__/Linear_1/__call__/w"]
                + self.x @ p["~/Linear_0/__call__/w"])
        np.testing.assert_allclose(apply(params, None, self.x), want, rtol=1e-5)

    def test_subclass_init_chain_keeps_one_init_scope(self):
        class Base(mh.Module):
            def __init__(self):
                super().__init__()
                self.a = Linear(3)

        class Child(Base):
            def __init__(self):
                super().__init__()
                self.b = Linear(3)

            def __call__(self, x):
                return self.b(self.a(x))

        self.assertEqual(_init_paths(lambda x: Child()(x), self.x), [
            "~/Child_0/__init__/Linear_0/__call__/w", "~/Child_0/__init__/Linear_1/__call__/w"])

    def test_dataclass_modules(self):
        @dataclasses.dataclass
        class Scale(mh.Module):
            size: int
            name: str | None = None

            def __post_init__(self):
                super().__post_init__()
                self.inner = Linear(self.size)

            def __call__(self, x):
                return self.inner(x) * mh.get_param("s", (), init=jax.nn.initializers.ones)

        @dataclasses.dataclass
        class Plain(mh.Module):
            size: int

            def __call__(self, x):
                return Linear(self.size)(x)

        def f(x):
            return Scale(3)(x) + Scale(3, name="named")(x) + Plain(3)(x)

        self.assertEqual(_init_paths(f, self.x), [
            "~/Scale_0/__init__/Linear_0/__call__/w", "~/Scale_0/__call__/s",
            "~/named_0/__init__/Linear_0/__call__/w", "~/named_0/__call__/s",
            "~/Plain_0/__call__/Linear_0/__call__/w"])


class ModuleReuseTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.x = jnp.ones((2, 3))

    def test_module_built_in_init_and_called_in_apply_is_refused(self):
        kept = []

        def f(x):
            if not kept:
                kept.append(Linear(3))
            return kept[0](x)

        init, apply = mh.transform(f)
        params = init(0, self.x)
        with self.assertRaisesRegex(
                mh.ModuleReuseError,
                r"Linear\(~/Linear_0\) was built in another run.*'~/Linear_0'.*Fix: build"):
            apply(params, None, self.x)
        with self.assertRaisesRegex(mh.ModuleReuseError, "another run"):
            init(1, self.x)

    def test_module_from_another_thread_run_is_refused(self):
        kept = []
        t = threading.Thread(target=lambda: mh.transform(
            lambda: kept.append(Linear(3))).init(None))
        t.start()
        t.join()
        with self.assertRaises(mh.ModuleReuseError):
            mh.transform(lambda x: kept[0](x)).init(0, self.x)

    def test_module_built_outside_a_lifted_body_is_legal_inside_it(self):
        def f(xs):
            lin = Linear(3)

            def body(c, x):
                return c, lin(x)

            _, ys = mh.lifted.scan(body, 0, xs)
            return ys + lin(xs)

        init, apply = mh.transform(f)
        xs = jnp.ones((4, 2, 3))
        params = init(0, xs)
        self.assertEqual(list(params), ["~/Linear_0/__call__/w"])
        w = params["~/Linear_0/__call__/w"]
        np.testing.assert_allclose(apply(params, None, xs), 2 * (xs @ w), rtol=1e-6)
        np.testing.assert_allclose(jax.jit(apply)(params, None, xs), 2 * (xs @ w), rtol=1e-6)



class NameScopeAndToModuleTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.x = jnp.ones((2, 3))

    def test_name_scope_adds_one_segment(self):
        def f(x):
            with mh.name_scope("block"):
                y = Linear(3)(x) * mh.get_param("s", ())
            with mh.name_scope("block"):  # Re-entered: modules keep counting.
                y = Linear(3)(y)
            return Linear(3)(y)

        init, apply = mh.transform(f)
        params = init(0, self.x)
        self.assertEqual(list(params), [
            "~/block/Linear_0/__call__/w", "~/block/s", "~/block/Linear_1/__call__/w",
            "~/Linear_0/__call__/w"])
        p = params
        want = ((self.x @ p["~/block/Linear_0/__call__/w"]) * p["~/block/s"]
                @ p["~/block/Linear_1/__call__/w"] @ p["~/Linear_0/__call__/w"])
        np.testing.assert_allclose(apply(params, None, self.x), want, rtol=1e-5)

    def test_name_scope_inside_a_method_and_a_lifted_body(self):
        class M(mh.Module):
            def __call__(self, x):
                def body(c, xi):
                    with mh.name_scope("step"):
                        return c, Linear(3)(xi)
                return mh.lifted.scan(body, 0, x)[1]

        params = mh.transform(lambda x: M()(x)).init(0, jnp.ones((4, 2, 3)))
        self.assertEqual(list(params), ["~/M_0/__call__/step/Linear_0/__call__/w"])

    def test_name_scope_refuses_bad_names_and_restores_on_error(self):
        for bad in ("a/b", "", 3):
            with self.assertRaises(mh.InvalidNameError):
                mh.transform(lambda bad=bad: mh.name_scope(bad).__enter__()).init(None)
        with self.assertRaises(mh.NotInTransformError):
            with mh.name_scope("x"):
                pass

        def f():
            try:
                with mh.name_scope("oops"):
                    raise KeyError("boom")
            except KeyError:
                pass
            return mh.get_param("w", (1,))

        self.assertEqual(list(mh.transform(f).init(0)), ["~/w"])

    def test_to_module(self):
        def block(x, scale=1.0):
            """A docstring."""
            return Linear(3)(x) * scale

        Block = mh.to_module(block)
        self.assertTrue(issubclass(Block, mh.Module))
        self.assertEqual(Block.__doc__, "A docstring.")

        def f(x):
            return Block()(x) + Block(name="other")(x, scale=2.0)

        init, apply = mh.transform(f)
        params = init(0, self.x)
        self.assertEqual(list(params), ["~/block_0/__call__/Linear_0/__call__/w",
                                        "~/other_0/__call__/Linear_0/__call__/w"])
        w0, w1 = params.values()
        np.testing.assert_allclose(apply(params, None, self.x),
                                   self.x @ w0 + 2.0 * (self.x @ w1), rtol=1e-6)
        with self.assertRaises(mh.InvalidArgumentError):
            mh.to_module(3)


# A random nesting: each node is a list of children; leaves are Linear layers.
_trees = st.recursive(st.just("leaf"), lambda kids: st.lists(kids, min_size=1, max_size=3),
                      max_leaves=8)


class Node(mh.Module):

    def __init__(self, children):
        super().__init__()
        self.children = children

    def __call__(self, x):
        for child in self.children:
            x = (Linear(2) if child == "leaf" else Node(child))(x)
        return x


def _reference(tree, params, prefix, x):
    counts = {}
    for child in tree:
        kind = "Linear" if child == "leaf" else "Node"
        n = counts.get(kind, 0)
        counts[kind] = n + 1
        path = f"{prefix}/{kind}_{n}/__call__"
        x = x @ params[f"{path}/w"] if child == "leaf" else _reference(child, params, path, x)
    return x


def _leaves(tree):
    return 1 if tree == "leaf" else sum(_leaves(c) for c in tree)


class PropertyTest(absltest.TestCase):

    @settings(max_examples=25, deadline=None)
    @given(tree=_trees, calls=st.integers(1, 2))
    def test_random_nesting_unique_paths_and_round_trip(self, tree, calls):
        tree = [tree] if tree == "leaf" else tree

        def f(x):
            node = Node(tree)
            for _ in range(calls):
                x = node(x)
            return x

        x = jnp.ones((1, 2))
        init, apply = mh.transform(f)
        params = init(0, x)
        self.assertLen(params, _leaves(tree))  # unique per leaf, reused across calls
        self.assertEqual(jax.jit(init)(0, x).keys(), params.keys())
        expected = x
        for _ in range(calls):
            expected = _reference(tree, params, "~/Node_0/__call__", expected)
        np.testing.assert_allclose(apply(params, None, x), expected, rtol=1e-5)


if __name__ == "__main__":
    absltest.main()
