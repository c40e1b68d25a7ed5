"""Module naming and param sharing (API.md section 3), incl. property tests."""

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
