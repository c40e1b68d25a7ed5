"""Tests for mh.data: filter, partition, merge, size, nbytes, nest, flatten."""

import doctest
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

import minihaiku as mh

_EMBED = "~/Embed_0/embeddings/embeddings"


def _model(ids):
    x = mh.nn.Embed(11, 6)(ids)
    x = mh.nn.LayerNorm(-1, create_scale=True, create_offset=True)(x)
    x = jax.nn.relu(mh.nn.Linear(8)(x))
    return mh.nn.Linear(3)(x)


def _params():
    f = mh.transform(_model)
    ids = jnp.arange(8).reshape(2, 4) % 11
    return f, ids, f.init(jax.random.PRNGKey(0), ids)


class SelectTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        _, _, self.params = _params()

    def test_filter_searches_the_regex_anywhere_in_the_path(self):
        out = mh.data.filter("Linear", self.params)
        self.assertEqual(list(out), [k for k in self.params if "Linear" in k])
        self.assertLen(out, 4)
        self.assertEqual(list(mh.data.filter(r"/b$", self.params)),
                         ["~/Linear_0/__call__/b", "~/Linear_1/__call__/b"])
        self.assertEqual(mh.data.filter(re.compile("^~/Embed"), self.params),
                         {_EMBED: self.params[_EMBED]})

    def test_filter_with_a_function_of_path_and_value(self):
        seen = []

        def big(path, value):
            seen.append(path)
            return value.size > 10

        out = mh.data.filter(big, self.params)
        self.assertEqual(seen, list(self.params))
        self.assertEqual(list(out), [k for k, v in self.params.items() if v.size > 10])
        for k in out:
            self.assertIs(out[k], self.params[k])

    def test_partition_splits_in_order_and_merge_restores(self):
        matched, rest = mh.data.partition(r"LayerNorm|/b$", self.params)
        self.assertEqual(set(matched) | set(rest), set(self.params))
        self.assertFalse(set(matched) & set(rest))
        self.assertEqual(list(matched), [k for k in self.params if k in matched])
        self.assertEqual(list(rest), [k for k in self.params if k in rest])
        self.assertEqual(set(matched), {
            "~/LayerNorm_0/__call__/scale", "~/LayerNorm_0/__call__/offset",
            "~/Linear_0/__call__/b", "~/Linear_1/__call__/b"})
        merged = mh.data.merge(matched, rest)
        self.assertEqual(merged.keys(), self.params.keys())
        for k in self.params:
            self.assertIs(merged[k], self.params[k])

    def test_merge_later_wins_like_dict_update(self):
        a = {"~/w": 1, "~/b": 2}
        b = {"~/b": 3, "~/c": 4}
        self.assertEqual(mh.data.merge(a, b), {"~/w": 1, "~/b": 3, "~/c": 4})
        self.assertEqual(list(mh.data.merge(a, b)), ["~/w", "~/b", "~/c"])
        self.assertEqual(mh.data.merge(b, a)["~/b"], 2)
        self.assertEqual(mh.data.merge(), {})
        self.assertEqual(a, {"~/w": 1, "~/b": 2})  # Inputs untouched.

    @parameterized.named_parameters(
        ("bad_regex", lambda p: mh.data.filter("(", p), "not a valid regex"),
        ("bad_pattern", lambda p: mh.data.filter(3, p), "regex string or fn"),
        ("not_a_dict", lambda p: mh.data.filter("w", list(p)), "flat {path: array} dict"),
        ("nested", lambda p: mh.data.partition("w", mh.data.nest(p)), "mh.data.flatten"),
        ("int_key", lambda p: mh.data.merge(p, {3: 1}), "key 3 is not a str"),
    )
    def test_bad_arguments_are_clear_errors(self, call, message):
        with self.assertRaisesRegex(mh.InvalidArgumentError, message):
            call(self.params)


class CountTest(absltest.TestCase):

    def test_size_and_nbytes_by_hand(self):
        f, ids, params = _params()
        want_size = 11 * 6 + 6 + 6 + 6 * 8 + 8 + 8 * 3 + 3
        self.assertEqual(mh.data.size(params), want_size)
        self.assertEqual(mh.data.nbytes(params), 4 * want_size)
        self.assertEqual(mh.data.nbytes(params), sum(np.asarray(v).nbytes
                                                     for v in params.values()))
        # Without creating the params.
        shapes = jax.eval_shape(f.init, jax.random.PRNGKey(0), ids)
        self.assertEqual(mh.data.size(shapes), want_size)
        self.assertEqual(mh.data.nbytes(shapes), 4 * want_size)

    def test_any_pytree_and_dtype(self):
        tree = {"a": jnp.zeros((2, 3), jnp.bfloat16), "b": [np.zeros(4, np.int64), 1.5],
                "c": None, "d": (jnp.zeros((), jnp.uint8),)}
        self.assertEqual(mh.data.size(tree), 6 + 4 + 1 + 1)
        self.assertEqual(mh.data.nbytes(tree),
                         6 * 2 + 4 * 8 + jnp.asarray(1.5).dtype.itemsize + 1)
        self.assertEqual(mh.data.size({}), 0)
        self.assertEqual(mh.data.nbytes({}), 0)

    def test_optax_state(self):
        _, _, params = _params()
        state = optax.adam(1e-3).init(params)
        self.assertEqual(mh.data.size(state), 2 * mh.data.size(params) + 1)


class NestTest(absltest.TestCase):

    def test_nest_splits_on_slashes_and_keeps_the_root(self):
        tree = {"~/Linear_0/__call__/w": 1, "~/Linear_0/__call__/b": 2, "~/n": 3}
        self.assertEqual(mh.data.nest(tree), {
            "~": {"Linear_0": {"__call__": {"w": 1, "b": 2}}, "n": 3}})

    def test_real_params_round_trip(self):
        _, _, params = _params()
        nested = mh.data.nest(params)
        self.assertEqual(list(nested), ["~"])
        self.assertIs(nested["~"]["Embed_0"]["embeddings"]["embeddings"], params[_EMBED])
        flat = mh.data.flatten(nested)
        self.assertEqual(flat.keys(), params.keys())
        for k in params:
            self.assertIs(flat[k], params[k])
        # jax.tree functions work on the nested form.
        self.assertEqual(mh.data.size(nested), mh.data.size(params))

    def test_odd_paths_round_trip(self):
        tree = {"a//b": 1, "/lead": 2, "trail/": 3, "~": 4, "x/~/y": 5, "/": 6}
        self.assertEqual(mh.data.flatten(mh.data.nest(tree)), tree)

    def test_prefix_clash_is_refused(self):
        for tree in ({"a": 1, "a/b": 2}, {"a/b/c": 1, "a/b": 2}):
            with self.assertRaisesRegex(mh.InvalidArgumentError, "also the prefix of 'a/b"):
                mh.data.nest(tree)

    def test_flatten_refuses_keys_that_would_alias(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"key 'a/b' at \['x', 'a/b'\]"):
            mh.data.flatten({"x": {"a/b": 1}})
        with self.assertRaisesRegex(mh.InvalidArgumentError, "key 1"):
            mh.data.flatten({1: 1})
        with self.assertRaisesRegex(mh.InvalidArgumentError, "expects nested dicts"):
            mh.data.flatten([1])

    def test_flatten_drops_empty_dicts_and_keeps_other_leaves(self):
        self.assertEqual(mh.data.flatten({"a": {}, "b": {"c": [1, 2], "d": None}}),
                         {"b/c": [1, 2], "b/d": None})

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(alphabet="ab/~", max_size=6), unique=True, max_size=8))
    def test_nest_flatten_property(self, paths):
        tree = {p: i for i, p in enumerate(paths)}
        clash = any(q.startswith(p + "/") for p in paths for q in paths)
        if clash:
            with self.assertRaises(mh.InvalidArgumentError):
                mh.data.nest(tree)
        else:
            self.assertEqual(mh.data.flatten(mh.data.nest(tree)), tree)


class OptaxTest(absltest.TestCase):
    """Optimizer labels and masks built with mh.data on a real model."""

    def setUp(self):
        super().setUp()
        self.f, self.ids, self.params = _params()
        target = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3))
        self.loss = lambda p: jnp.mean((self.f.apply(p, None, self.ids) - target) ** 2)
        frozen, _ = mh.data.partition("Embed_", self.params)
        no_decay = mh.data.filter(r"LayerNorm|/b$", self.params)
        self.labels = {k: "frozen" if k in frozen else "train" for k in self.params}
        self.decay_mask = {k: k not in no_decay for k in self.params}
        self.assertEqual(list(frozen), [_EMBED])
        self.assertEqual([k for k, decay in self.decay_mask.items() if decay],
                         [_EMBED, "~/Linear_0/__call__/w", "~/Linear_1/__call__/w"])

    def _train(self, tx, steps):
        @jax.jit
        def step(params, opt_state):
            updates, opt_state = tx.update(jax.grad(self.loss)(params), opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        params, opt_state = self.params, tx.init(self.params)
        for _ in range(steps):
            params, opt_state = step(params, opt_state)
        return params

    def test_one_sgd_step_against_hand_written_update(self):
        lr, wd = 0.1, 0.5
        tx = optax.multi_transform(
            {"frozen": optax.set_to_zero(),
             "train": optax.chain(optax.masked(optax.add_decayed_weights(wd), self.decay_mask),
                                  optax.sgd(lr))},
            self.labels)
        new = self._train(tx, 1)
        grads = jax.grad(self.loss)(self.params)
        for k, p in self.params.items():
            if self.labels[k] == "frozen":
                self.assertEqual(np.asarray(new[k]).tobytes(), np.asarray(p).tobytes(), k)
            elif self.decay_mask[k]:
                np.testing.assert_allclose(new[k], p - lr * (grads[k] + wd * p), atol=1e-6)
            else:
                np.testing.assert_allclose(new[k], p - lr * grads[k], atol=1e-6)

    def test_adamw_frozen_stay_bit_identical_and_decay_only_where_masked(self):
        def tx(wd):
            return optax.multi_transform(
                {"frozen": optax.set_to_zero(),
                 "train": optax.adamw(1e-2, weight_decay=wd, mask=self.decay_mask)},
                self.labels)

        decayed, undecayed = self._train(tx(0.5), 1), self._train(tx(0.0), 1)
        for k, p in self.params.items():
            if self.labels[k] == "frozen":
                for trained in (decayed, undecayed):
                    self.assertEqual(np.asarray(trained[k]).tobytes(), np.asarray(p).tobytes())
            elif self.decay_mask[k]:
                self.assertGreater(float(jnp.max(jnp.abs(decayed[k] - undecayed[k]))), 1e-4, k)
            else:
                # After one step, undecayed params do not depend on weight decay at all.
                np.testing.assert_array_equal(decayed[k], undecayed[k], err_msg=k)
        # Many steps: the embeddings never move, everything else does.
        trained = self._train(tx(0.5), 20)
        for k, p in self.params.items():
            same = np.asarray(trained[k]).tobytes() == np.asarray(p).tobytes()
            self.assertEqual(same, self.labels[k] == "frozen", k)


class DocstringTest(absltest.TestCase):

    def test_docstring_examples_run(self):
        result = doctest.testmod(mh.data, extraglobs={"mh": mh, "jax": jax, "jnp": jnp})
        self.assertEqual(result.failed, 0)
        self.assertGreaterEqual(result.attempted, 8)


if __name__ == "__main__":
    absltest.main()
