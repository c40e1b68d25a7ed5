"""MultiHeadAttention against hand-written jnp and dm-haiku, GQA, masks, the decoding cache."""


import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

import minihaiku as mh
from helpers import assert_close
from helpers.haiku_compare import KEY, compare, randn, randomize

W_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_HK_W_INIT = hk.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")
_PRE = "~/MultiHeadAttention_0/__call__/"
_STATE = "~/MultiHeadAttention_0/"  # state belongs to the module


def _to_haiku(params):
    return {f"multi_head_attention/{n}": {v: params[f"{_PRE}{n}_0/__call__/{v}"] for v in "wb"}
            for n in ("query", "key", "value", "linear")}


def _reference(params, q_in, k_in, v_in, heads, kv_heads, key_size, mask=None):
    """Hand-written attention: kv heads repeated for their group of query heads."""
    def proj(name, x, h):
        y = x @ params[f"{_PRE}{name}_0/__call__/w"] + params[f"{_PRE}{name}_0/__call__/b"]
        return y.reshape(x.shape[:-1] + (h, -1))
    q, k, v = proj("query", q_in, heads), proj("key", k_in, kv_heads), proj("value", v_in, kv_heads)
    k = jnp.repeat(k, heads // kv_heads, axis=-2)
    v = jnp.repeat(v, heads // kv_heads, axis=-2)
    logits = jnp.einsum("...thd,...shd->...hts", q, k) / np.sqrt(key_size)
    if mask is not None:
        logits = jnp.where(mask, logits, -1e30)
    out = jnp.einsum("...hts,...shd->...thd", jax.nn.softmax(logits), v)
    out = out.reshape(out.shape[:-2] + (-1,))
    return out @ params[f"{_PRE}linear_0/__call__/w"] + params[f"{_PRE}linear_0/__call__/b"]


def _mha(*args, **kwargs):
    return mh.nn.MultiHeadAttention(*args, **kwargs)


class HaikuEquivalenceTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("self", 2, 4, None, None, [2, 5, 8], [2, 5, 8], False),
        ("cross_sizes", 3, 4, 6, 10, [2, 3, 8], [2, 7, 5], False),
        ("haiku_mask", 2, 4, None, None, [2, 5, 8], [2, 5, 8], True),
        ("extra_leading_axes", 2, 3, None, None, [2, 3, 4, 6], [2, 3, 4, 6], True),
        ("unbatched", 2, 4, None, None, [5, 8], [6, 8], True))
    def test_values_and_grads(self, heads, key_size, value_size, model_size, qs, ks, masked):
        q, kv = randn(0, qs), randn(1, ks)
        lead, t, s = tuple(qs[:-2]), qs[-2], ks[-2]
        mask = None
        if masked:  # Haiku's [..., 1, T, S] layout, one query seeing nothing at all
            mask = jax.random.bernoulli(jax.random.PRNGKey(5), 0.6, lead + (1, t, s))
            mask = mask.at[(0,) * len(lead) + (0, 0)].set(False)
        compare(
            lambda q, kv: _mha(heads, key_size, W_INIT, value_size, model_size)(q, kv, kv, mask),
            lambda q, kv: hk.MultiHeadAttention(heads, key_size, w_init=_HK_W_INIT,
                                                value_size=value_size,
                                                model_size=model_size)(q, kv, kv, mask),
            _to_haiku, q, kv, grad_atol=1e-4)
        # The key bias's gradient is 0 in exact arithmetic (adding q·b_k shifts
        # all of a query's logits alike, which softmax ignores); in float32 both
        # libraries return rounding noise of ~1e-7 times the other gradients
        # (up to ~50 here), which differs with the order of operations.

    def test_haiku_refuses_a_missing_w_init_and_so_do_we(self):
        with self.assertRaisesRegex(ValueError, "w_init"):
            hk.transform(lambda x: hk.MultiHeadAttention(2, 4)(x, x, x)).init(KEY, jnp.ones([1, 2]))
        with self.assertRaisesRegex(mh.InvalidArgumentError,
                                    "MultiHeadAttention_0' needs w_init.*Fix.*variance_scaling"):
            mh.transform(lambda x: _mha(2, 4)(x, x, x)).init(KEY, jnp.ones([1, 2]))


class AttentionTest(parameterized.TestCase):

    def test_init_shapes_and_paths(self):
        x = jnp.ones([2, 5, 8])
        params = mh.transform(lambda x: _mha(4, 3, W_INIT, 5, 7, num_kv_heads=2)(x, x, x)).init(
            KEY, x)
        self.assertEqual({k: v.shape for k, v in params.items()}, {
            _PRE + "query_0/__call__/w": (8, 12), _PRE + "query_0/__call__/b": (12,),
            _PRE + "key_0/__call__/w": (8, 6), _PRE + "key_0/__call__/b": (6,),
            _PRE + "value_0/__call__/w": (8, 10), _PRE + "value_0/__call__/b": (10,),
            _PRE + "linear_0/__call__/w": (20, 7), _PRE + "linear_0/__call__/b": (7,)})

    @parameterized.parameters((4, 2, 3, 3), (6, 1, 4, 2), (4, 4, 2, 5))
    def test_grouped_query_attention_matches_repeated_kv_heads(self, heads, kv, ks, vs):
        x, y = randn(0, [2, 5, 8]), randn(1, [2, 6, 8])
        mask = jax.random.bernoulli(jax.random.PRNGKey(3), 0.7, (2, 5, 6))
        f = mh.transform(lambda x, y, m: _mha(heads, ks, W_INIT, vs, num_kv_heads=kv)(x, y, y, m))
        params = randomize(f.init(KEY, x, y, mask))
        want = _reference(params, x, y, y, heads, kv, ks, mask[:, None])
        assert_close(f.apply(params, None, x, y, mask), want)

    def test_num_kv_heads_equal_to_num_heads_is_plain_attention(self):
        x = randn(0, [2, 5, 8])
        gqa = mh.transform(lambda x: _mha(4, 2, W_INIT, num_kv_heads=4)(x, x, x))
        plain = mh.transform(lambda x: _mha(4, 2, W_INIT)(x, x, x))
        params = randomize(plain.init(KEY, x))
        self.assertEqual(jax.tree_util.tree_map(jnp.shape, gqa.init(KEY, x)),
                         jax.tree_util.tree_map(jnp.shape, params))
        np.testing.assert_array_equal(gqa.apply(params, None, x), plain.apply(params, None, x))

    def test_mask_layouts_and_is_causal_agree(self):
        b, h, t = 2, 2, 4
        x = randn(0, [b, t, 6])
        f = mh.transform(lambda x, m, c=False: _mha(h, 3, W_INIT)(x, x, x, m, is_causal=c))
        params = randomize(f.init(KEY, x, None))
        causal = mh.nn.causal_mask(t)
        np.testing.assert_array_equal(causal, np.tril(np.ones((t, t), bool)))
        want = _reference(params, x, x, x, h, h, 3, causal)
        for mask in (causal, jnp.broadcast_to(causal, (b, t, t)),
                     jnp.broadcast_to(causal, (b, 1, t, t)),
                     jnp.broadcast_to(causal, (b, h, t, t)), causal.astype(jnp.int32)):
            assert_close(f.apply(params, None, x, mask), want)
        assert_close(f.apply(params, None, x, None, True), want)

    def test_jit_equals_eager(self):
        x = randn(0, [2, 5, 8])
        f = mh.transform(lambda x: _mha(4, 2, W_INIT, num_kv_heads=2)(x, x, x, is_causal=True))
        params = randomize(f.init(KEY, x))
        assert_close(jax.jit(f.apply)(params, None, x), f.apply(params, None, x), atol=1e-6)

    def test_bad_input_names_module_and_fix(self):
        x = jnp.ones([2, 5, 8])
        cases = [
            (lambda: _mha(4, 2, W_INIT, num_kv_heads=3)(x, x, x), mh.InvalidArgumentError,
             "MultiHeadAttention_0.*num_heads=4 is not a multiple of num_kv_heads=3.*Fix"),
            (lambda: _mha(2, 2, W_INIT)(x, x, x[:, :4]), mh.ModuleInputError,
             r"MultiHeadAttention_0.*key \(2, 5, 8\) and value \(2, 4, 8\).*Fix"),
            (lambda: _mha(2, 2, W_INIT)(x, x[:1], x[:1]), mh.ModuleInputError,
             "MultiHeadAttention_0.*leading.*Fix"),
            (lambda: _mha(2, 2, W_INIT)(x[0, 0], x, x), mh.ModuleInputError,
             r"MultiHeadAttention_0.*query has shape \(8,\).*Fix"),
            (lambda: _mha(2, 2, W_INIT)(x, x, x, jnp.ones([5])), mh.ModuleInputError,
             "MultiHeadAttention_0.*mask has rank 1.*Fix"),
            (lambda: _mha(2, 2, W_INIT)(x, x, x, jnp.ones([2, 3, 5, 5], bool)),
             mh.ModuleInputError, "MultiHeadAttention_0.*does not broadcast.*Fix"),
            (lambda: _mha(0, 2, W_INIT), mh.InvalidArgumentError, "num_heads=0"),
        ]
        for fn, cls, msg in cases:
            with self.assertRaisesRegex(cls, msg):
                mh.transform(fn).init(KEY)


def _cached_model(cache_size, kv_heads=2, layers=None):
    def block(x):
        return x + _mha(4, 3, W_INIT, num_kv_heads=kv_heads, model_size=8,
                        cache_size=cache_size)(x, x, x, is_causal=cache_size is None)
    if layers is None:
        return block
    return mh.lifted.layer_stack(layers)(block)


class DecodingCacheTest(parameterized.TestCase):

    def _decode(self, model, params, state, xs, prompt):
        step = jax.jit(model.apply)
        outs = []
        out, state = step(params, state, None, xs[:, :prompt])
        outs.append(out)
        for i in range(prompt, xs.shape[1]):
            out, state = step(params, state, None, xs[:, i:i + 1])
            outs.append(out)
        return jnp.concatenate(outs, axis=1), state

    @parameterized.parameters((1, 2), (3, 4))
    def test_token_by_token_equals_full_causal_attention(self, prompt, kv_heads):
        xs = randn(0, [2, 7, 8])
        full = mh.transform(_cached_model(None, kv_heads))
        cached = mh.transform_with_state(_cached_model(9, kv_heads))
        params = randomize(full.init(KEY, xs))
        cparams, state = cached.init(KEY, xs[:, :1])
        self.assertEqual(jax.tree_util.tree_map(jnp.shape, cparams),
                         jax.tree_util.tree_map(jnp.shape, params))
        self.assertEqual({k: (v.shape, v.dtype) for k, v in state.items()}, {
            _STATE + "cache_index": ((), jnp.int32),
            _STATE + "cached_key": ((2, 9, kv_heads, 3), jnp.float32),
            _STATE + "cached_value": ((2, 9, kv_heads, 3), jnp.float32)})
        self.assertFalse(np.any(state[_STATE + "cached_key"]))   # init's state is the empty cache
        out, state = self._decode(cached, params, state, xs, prompt)
        assert_close(out, full.apply(params, None, xs))
        self.assertEqual(int(state[_STATE + "cache_index"]), 7)

    def test_cache_under_layer_stack_stacks_per_layer(self):
        xs = randn(0, [2, 6, 8])
        full = mh.transform(_cached_model(None, layers=3))
        cached = mh.transform_with_state(_cached_model(6, layers=3))
        params = randomize(full.init(KEY, xs))
        _, state = cached.init(KEY, xs[:, :1])
        self.assertEqual({k: v.shape for k, v in state.items()}, {
            _STATE + "cache_index": (3,), _STATE + "cached_key": (3, 2, 6, 2, 3),
            _STATE + "cached_value": (3, 2, 6, 2, 3)})
        out, state = self._decode(cached, params, state, xs, 2)
        assert_close(out, full.apply(params, None, xs))
        np.testing.assert_array_equal(state[_STATE + "cache_index"], [6, 6, 6])

    def test_writing_past_the_cache_is_an_error_when_eager(self):
        xs = randn(0, [1, 4, 8])
        cached = mh.transform_with_state(_cached_model(3))
        params, state = cached.init(KEY, xs[:, :1])
        _, state = cached.apply(params, state, None, xs[:, :2])
        with self.assertRaisesRegex(mh.ModuleInputError,
                                    "MultiHeadAttention_0.*holds 3 positions, 2 are written.*Fix"):
            cached.apply(params, state, None, xs[:, 2:4])

    @parameterized.parameters(None, 2)
    def test_writing_past_the_cache_is_an_error_when_eager_under_layer_stack(self, layers):
        # Under layer_stack the per-layer index is a traced slice; the check reads
        # the concrete stacked index before the scan runs.
        xs = randn(0, [1, 4, 8])
        cached = mh.transform_with_state(_cached_model(3, layers=layers))
        params, state = cached.init(KEY, xs[:, :1])
        _, state = cached.apply(params, state, None, xs[:, :2])
        with self.assertRaisesRegex(mh.ModuleInputError,
                                    "MultiHeadAttention_0.*holds 3 positions, 2 are written "
                                    "and this call adds 2.*Fix"):
            cached.apply(params, state, None, xs[:, 2:4])
        _, state = cached.apply(params, state, None, xs[:, 2:3])   # exactly full: fine
        np.testing.assert_array_equal(state[_STATE + "cache_index"], [3, 3] if layers else 3)

    def test_cache_index_stays_at_cache_size_under_jit(self):
        xs = randn(0, [1, 4, 8])
        cached = mh.transform_with_state(_cached_model(3, layers=2))
        params, state = cached.init(KEY, xs[:, :1])
        step = jax.jit(cached.apply)
        for _ in range(3):   # 6 tokens into 3 positions: unchecked under jit
            _, state = step(params, state, None, xs[:, :2])
        np.testing.assert_array_equal(state[_STATE + "cache_index"], [3, 3])

    @parameterized.parameters(None, 8)
    def test_mask_that_does_not_fit_is_a_module_input_error(self, cache_size):
        x = jnp.ones([2, 5, 8])
        s = cache_size or 5
        for mask, msg in [
                (jnp.ones([5, s + 1], bool), rf"mask of shape \(5, {s + 1}\) does not fit "
                                             rf"T=5, S={s}.*Fix"),
                (jnp.ones([3, 5, s], bool), rf"mask of shape \(3, 5, {s}\) does not "
                                            "broadcast.*Fix"),
                (jnp.ones([2, 3, 5, s], bool), rf"mask of shape \(2, 3, 5, {s}\) does not "
                                               "broadcast.*Fix")]:
            f = mh.transform_with_state(
                lambda x, m: _mha(2, 4, W_INIT, cache_size=cache_size)(x, x, x, m))
            with self.assertRaisesRegex(mh.ModuleInputError, "MultiHeadAttention_0': " + msg):
                f.init(KEY, x, mask)

    def test_cache_needs_query_key_value_of_the_same_length(self):
        x = jnp.ones([1, 2, 8])
        f = mh.transform_with_state(
            lambda x: _mha(2, 2, W_INIT, cache_size=4)(x, x[:, :1], x[:, :1]))
        with self.assertRaisesRegex(mh.ModuleInputError, "MultiHeadAttention_0.*cache_size.*Fix"):
            f.init(KEY, x)


class HeadsLinearTest(absltest.TestCase):

    def test_same_params_and_values_as_linear_then_reshape(self):
        from minihaiku.nn._heads_linear import HeadsLinear
        x, h = randn(0, [2, 3, 8]), randn(1, [2, 3, 4, 5])
        split = mh.transform(lambda x: HeadsLinear(12, name="p")(x, 4))
        merge = mh.transform(lambda h: HeadsLinear(6, name="p")(h))
        linear = mh.transform(lambda x: mh.nn.Linear(12, name="p")(x))
        params = randomize(split.init(KEY, x))
        self.assertEqual({k: v.shape for k, v in params.items()},
                         {k: v.shape for k, v in linear.init(KEY, x).items()})
        assert_close(split.apply(params, None, x),
                     linear.apply(params, None, x).reshape(2, 3, 4, 3))
        params = randomize(merge.init(KEY, h))
        self.assertEqual(params["~/p_0/__call__/w"].shape, (20, 6))
        flat = mh.transform(lambda h: mh.nn.Linear(6, name="p")(h.reshape(2, 3, 20)))
        assert_close(merge.apply(params, None, h), flat.apply(params, None, h))

    def test_integer_input_is_refused_like_linear(self):
        f = mh.transform(lambda x: _mha(2, 4, W_INIT)(x, x, x))
        with self.assertRaises(mh.MiniHaikuError):
            f.init(KEY, jnp.ones([2, 5, 8], jnp.int32))


class BackwardResidualsTest(absltest.TestCase):

    def test_backward_pass_keeps_fewer_attention_sized_arrays_than_jax_default(self):
        # The softmax's output is all its gradient needs; JAX's default rule
        # also keeps the unnormalised exponentials (a third [B, H, T, S] array).
        b, t, heads, size = 2, 16, 4, 8
        f = mh.without_apply_rng(mh.transform(
            lambda x: _mha(heads, size, W_INIT)(x, x, x, is_causal=True)))
        x = randn(0, [b, t, heads * size])
        params = f.init(KEY, x)

        def attention_sized(fn, *args):
            _, vjp = jax.vjp(fn, *args)
            return [leaf for leaf in jax.tree_util.tree_leaves(vjp)
                    if getattr(leaf, "dtype", None) == jnp.float32
                    and leaf.shape[-3:] == (heads, t, t)]

        def by_hand(params, x):
            q, k, v = (
                (x @ params[f"{_PRE}{n}_0/__call__/w"] + params[f"{_PRE}{n}_0/__call__/b"])
                .reshape(b, t, heads, size) for n in ("query", "key", "value"))
            out = jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(b, t, -1)
            w, bias = (params[f"{_PRE}linear_0/__call__/{n}"] for n in "wb")
            return out @ w + bias

        ours, jax_default = attention_sized(f.apply, params, x), attention_sized(by_hand, params, x)
        self.assertLen(jax_default, 3)
        self.assertLen(ours, 2)
        assert_close(f.apply(params, x), by_hand(params, x), atol=1e-6)
        grads = [jax.grad(lambda p, g=g: g(p, x).sum())(params) for g in (f.apply, by_hand)]
        for path in params:
            assert_close(grads[0][path], grads[1][path], atol=1e-5)


class TransformerTrainingTest(absltest.TestCase):

    def test_small_pre_norm_block_loss_falls(self):
        def model(tokens):
            x = mh.nn.Embed(16, 32)(tokens)

            def block(x):
                h = mh.nn.LayerNorm()(x)
                x = x + _mha(4, 8, W_INIT)(h, h, h, is_causal=True)
                h = mh.nn.RMSNorm()(x)
                return x + mh.nn.MLP([64, 32])(h)

            x = mh.lifted.layer_stack(2)(block)(x)
            return mh.nn.Linear(16)(mh.nn.LayerNorm()(x))

        f = mh.transform(model)
        tokens = jax.random.randint(KEY, (4, 12), 0, 16)
        params = f.init(KEY, tokens)
        opt = optax.adam(3e-3)
        opt_state = opt.init(params)

        def loss_fn(p):
            logits = f.apply(p, None, tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        @jax.jit
        def step(p, s):
            loss, g = jax.value_and_grad(loss_fn)(p)
            updates, s = opt.update(g, s)
            return optax.apply_updates(p, updates), s, loss

        losses = []
        for _ in range(30):
            params, opt_state, loss = step(params, opt_state)
            losses.append(float(loss))
        self.assertTrue(np.isfinite(losses).all())
        self.assertLess(losses[-1], 0.7 * losses[0])


if __name__ == "__main__":
    absltest.main()
