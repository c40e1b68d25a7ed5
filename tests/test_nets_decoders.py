"""Tests for mh.nets.GPT2 and mh.nets.Llama against hand-written numpy decoders.

The references below spell out the math with explicit params (float64
numpy: attention with a full softmax and repeated kv heads, RoPE as a
complex rotation); the nets must match them unrolled and with
``scan_layers``, and decoding with the KV cache must give the logits of the
full forward pass. Parity with PyTorch ``transformers`` is in
``test_interop_hf.py``.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import minihaiku as mh
from minihaiku import nets
from test_nn_rotary import rotary_reference

_LLAMA = nets.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=24, num_layers=2,
                          num_heads=4, num_kv_heads=2, init_std=0.3, cache_size=12)
_GPT2 = nets.GPT2Config(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                        max_position_embeddings=20, init_std=0.3, cache_size=12)
_TOKENS = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])


def _rms(x, scale, eps):
    return scale * x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)


def _layer_norm(x, scale, offset, eps):
    mean = x.mean(-1, keepdims=True)
    return scale * (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) + offset


def _attention(q, k, v, window=None):
    """q ``[B,T,H,D]``, k/v ``[B,T,Hkv,D]``: causal softmax attention, kv heads repeated."""
    group = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    logits = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    delta = np.arange(q.shape[1])[:, None] - np.arange(q.shape[1])[None, :]
    visible = (delta >= 0) & (delta < (window or 10**9))
    logits = np.where(visible, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", weights, v)


def llama_reference(params, c, tokens):
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    top = "~/Llama_0/__call__/"
    b, t = tokens.shape
    d = c.dims

    def linear(h, path, bias):
        return h @ p[path + "/__call__/w"] + (p[path + "/__call__/b"] if bias else 0)

    x = p[top + "embed_tokens"][tokens]
    for i in range(c.num_layers):
        blk = f"{top}layers_{i}/__call__/"
        att = blk + "self_attn_0/__call__/"
        h = _rms(x, p[blk + "input_layernorm_0/__call__/scale"], c.rms_norm_eps)
        q = linear(h, att + "q_proj_0", c.attention_bias).reshape(b, t, c.num_heads, d)
        k = linear(h, att + "k_proj_0", c.attention_bias).reshape(b, t, c.kv_heads, d)
        v = linear(h, att + "v_proj_0", c.attention_bias).reshape(b, t, c.kv_heads, d)
        q, k = (rotary_reference(y, np.arange(t), c.rope_theta) for y in (q, k))
        out = _attention(q, k, v, c.sliding_window).reshape(b, t, -1)
        x = x + linear(out, att + "o_proj_0", c.attention_out_bias)
        h = _rms(x, p[blk + "post_attention_layernorm_0/__call__/scale"], c.rms_norm_eps)
        mlp = blk + "mlp_0/__call__/"
        gate = linear(h, mlp + "gate_proj_0", c.mlp_bias)
        up = linear(h, mlp + "up_proj_0", c.mlp_bias)
        x = x + linear(gate / (1 + np.exp(-gate)) * up, mlp + "down_proj_0", c.mlp_bias)
    x = _rms(x, p[top + "norm_0/__call__/scale"], c.rms_norm_eps)
    if c.tie_word_embeddings:
        return x @ p[top + "embed_tokens"].T
    return x @ p[top + "lm_head_0/__call__/w"]


def gpt2_reference(params, c, tokens):
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    top = "~/GPT2_0/__call__/"
    b, t = tokens.shape

    def linear(h, path):
        return h @ p[path + "/__call__/w"] + p[path + "/__call__/b"]

    def norm(h, path):
        return _layer_norm(h, p[path + "/__call__/scale"], p[path + "/__call__/offset"],
                           c.layer_norm_eps)

    x = p[top + "wte"][tokens] + p[top + "wpe"][np.arange(t)]
    for i in range(c.num_layers):
        blk = f"{top}h_{i}/__call__/"
        qkv = linear(norm(x, blk + "ln_1_0"), blk + "attn_0/__call__/c_attn_0")
        q, k, v = (y.reshape(b, t, c.num_heads, -1) for y in np.split(qkv, 3, axis=-1))
        x = x + linear(_attention(q, k, v).reshape(b, t, -1), blk + "attn_0/__call__/c_proj_0")
        h = linear(norm(x, blk + "ln_2_0"), blk + "mlp_0/__call__/c_fc_0")
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
        x = x + linear(h, blk + "mlp_0/__call__/c_proj_0")
    return norm(x, top + "ln_f_0") @ p[top + "wte"].T


def _net(config):
    return nets.GPT2 if isinstance(config, nets.GPT2Config) else nets.Llama


def random_params(f, *args, seed=0):
    """Params of ``f.init(rng, *args)``'s shapes and order, drawn with numpy (no compile).

    Weights ~N(0, 0.3), norm scales ~1: wider than the nets' init so every
    layer matters in the comparisons.
    """
    order = []
    shapes = jax.eval_shape(lambda *a: order.extend(p := f.init(0, *a)) or p, *args)
    rng = np.random.default_rng(seed)
    return {path: np.asarray(
        (1.0 if path.endswith("scale") else 0.0) + 0.3 * rng.normal(size=shapes[path].shape),
        shapes[path].dtype) for path in order}


def _init(config, seed=0):
    f = mh.transform(lambda t: _net(config)(config)(t))
    return f, random_params(f, _TOKENS, seed=seed)


def _stack(params, config, block):
    """Unrolled params restacked as ``scan_layers`` stores them."""
    out = {}
    for path, value in params.items():
        if f"/{block}_0/" in path:
            layers = [params[path.replace(f"/{block}_0/", f"/{block}_{i}/")]
                      for i in range(config.num_layers)]
            out[path] = jnp.stack(layers)
        elif f"/{block}_" not in path:
            out[path] = value
    return out


_VARIANTS = {
    "gqa": _LLAMA,
    "biases_head_dim_tied": dataclasses.replace(
        _LLAMA, head_dim=6, attention_bias=True, attention_out_bias=True, mlp_bias=True,
        tie_word_embeddings=True, rope_theta=1e6),
    "sliding_window_mqa": dataclasses.replace(_LLAMA, sliding_window=3, num_kv_heads=1),
}


class LlamaTest(parameterized.TestCase):

    @parameterized.named_parameters(*_VARIANTS.items())
    def test_matches_the_reference(self, config):
        f, params = _init(config)
        np.testing.assert_allclose(jax.jit(f.apply)(params, None, _TOKENS),
                                   llama_reference(params, config, _TOKENS), atol=1e-4)

    @parameterized.named_parameters(*_VARIANTS.items())
    def test_scan_layers_gives_the_same_logits(self, config):
        f, params = _init(config)
        stacked = dataclasses.replace(config, scan_layers=True)
        g = mh.transform(lambda t: nets.Llama(stacked)(t))
        restacked = _stack(params, config, "layers")
        self.assertEqual(jax.tree.map(jnp.shape, restacked),
                         jax.tree.map(jnp.shape, jax.eval_shape(g.init, 0, _TOKENS)))
        np.testing.assert_allclose(jax.jit(g.apply)(restacked, None, _TOKENS),
                                   jax.jit(f.apply)(params, None, _TOKENS), atol=1e-5)

    @parameterized.product(variant=list(_VARIANTS), scan_layers=[False, True])
    def test_decoding_with_the_cache_gives_the_full_forward_logits(self, variant, scan_layers):
        config = dataclasses.replace(_VARIANTS[variant], scan_layers=scan_layers)
        f, params = _init(config)
        full = jax.jit(f.apply)(params, None, _TOKENS)
        dec = mh.transform_with_state(lambda t: nets.Llama(config)(t, decode=True))
        state = nets.init_cache(dec, _TOKENS[:, :5])
        step = jax.jit(dec.apply)
        logits, state = step(params, state, None, _TOKENS[:, :5])
        outs = [logits]
        for i in range(5, _TOKENS.shape[1]):
            logits, state = step(params, state, None, _TOKENS[:, i:i + 1])
            outs.append(logits)
        np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5)
        self.assertEqual(int(state["~/Llama_0/cache_index"]), _TOKENS.shape[1])

    def test_init_cache_is_the_empty_cache_of_the_documented_shapes(self):
        for scan_layers, lead in ((False, ()), (True, (2,))):
            config = dataclasses.replace(_LLAMA, scan_layers=scan_layers)
            dec = mh.transform_with_state(lambda t, c=config: nets.Llama(c)(t, decode=True))
            state = nets.init_cache(dec, _TOKENS)
            att = "~/Llama_0/__call__/layers_{}/__call__/self_attn_0/"  # state: the module's
            want = {"~/Llama_0/cache_index": ()}
            for i in range(1 if scan_layers else 2):
                want[att.format(i) + "cached_key"] = lead + (2, 12, 2, 4)  # B, size, kv, D
                want[att.format(i) + "cached_value"] = lead + (2, 12, 2, 4)
            self.assertEqual({k: v.shape for k, v in state.items()}, want)
            for value in state.values():
                self.assertFalse(np.any(value))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "transform_with_state"):
            nets.init_cache(mh.transform(lambda t: nets.Llama(_LLAMA)(t)), _TOKENS)

    def test_explicit_positions(self):
        f, params = _init(_LLAMA)
        apply = jax.jit(f.apply)
        shifted = mh.transform(lambda t: nets.Llama(_LLAMA)(t, jnp.arange(8) + 3)).apply
        # RoPE sees only distances: shifting every position keeps the logits.
        np.testing.assert_allclose(shifted(params, None, _TOKENS),
                                   apply(params, None, _TOKENS), atol=1e-4)

    def test_param_paths(self):
        _, params = _init(_LLAMA)
        blk = "~/Llama_0/__call__/layers_0/__call__/"
        self.assertEqual(list(params)[:4], [
            "~/Llama_0/__call__/embed_tokens", blk + "input_layernorm_0/__call__/scale",
            blk + "self_attn_0/__call__/q_proj_0/__call__/w",
            blk + "self_attn_0/__call__/k_proj_0/__call__/w"])
        self.assertEqual(list(params)[-2:], ["~/Llama_0/__call__/norm_0/__call__/scale",
                                             "~/Llama_0/__call__/lm_head_0/__call__/w"])
        self.assertLen(params, 1 + 9 * 2 + 2)

    def test_errors(self):
        no_cache = dataclasses.replace(_LLAMA, cache_size=None)
        dec = mh.transform_with_state(lambda t: nets.Llama(no_cache)(t, decode=True))
        with self.assertRaisesRegex(mh.ModuleInputError, r"Llama_0.*cache_size=None"):
            dec.init(0, _TOKENS)
        dec = mh.transform_with_state(lambda t: nets.Llama(_LLAMA)(t, decode=True))
        params, state = random_params(mh.transform(lambda t: nets.Llama(_LLAMA)(t)),
                                      _TOKENS), nets.init_cache(dec, _TOKENS)
        _, state = jax.jit(dec.apply)(params, state, None, _TOKENS)
        with self.assertRaisesRegex(mh.ModuleInputError, r"holds 12 positions, 8 are written"
                                                         r" and this call adds 8"):
            dec.apply(params, state, None, _TOKENS)
        f = mh.transform(lambda t: nets.Llama(_LLAMA)(t))
        with self.assertRaisesRegex(mh.ModuleInputError, r"tokens of shape \(8,\)"):
            f.init(0, _TOKENS[0])
        with self.assertRaisesRegex(mh.InvalidArgumentError, "num_kv_heads must divide"):
            dataclasses.replace(_LLAMA, num_kv_heads=3)
        with self.assertRaisesRegex(mh.InvalidArgumentError, r"num_layers=0"):
            dataclasses.replace(_LLAMA, num_layers=0)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "head_dim=5 must be even"):
            dataclasses.replace(_LLAMA, head_dim=5)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "pass an mh.nets.LlamaConfig"):
            mh.transform(lambda t: nets.Llama(_GPT2)(t)).init(0, _TOKENS)


class GPT2Test(parameterized.TestCase):

    def test_matches_the_reference(self):
        f, params = _init(_GPT2)
        np.testing.assert_allclose(jax.jit(f.apply)(params, None, _TOKENS),
                                   gpt2_reference(params, _GPT2, _TOKENS), atol=1e-4)

    @parameterized.parameters(False, True)
    def test_scan_layers_and_the_cache(self, scan_layers):
        f, params = _init(_GPT2)
        full = jax.jit(f.apply)(params, None, _TOKENS)
        config = dataclasses.replace(_GPT2, scan_layers=scan_layers)
        if scan_layers:
            params = _stack(params, _GPT2, "h")
        dec = mh.transform_with_state(lambda t: nets.GPT2(config)(t, decode=True))
        state = nets.init_cache(dec, _TOKENS[:, :3])
        step = jax.jit(dec.apply)
        outs = []
        for i in range(0, 8, 4):
            logits, state = step(params, state, None, _TOKENS[:, i:i + 4])
            outs.append(logits)
        np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5)

    def test_param_paths_and_errors(self):
        _, params = _init(_GPT2)
        self.assertEqual(list(params)[:3], [
            "~/GPT2_0/__call__/wte", "~/GPT2_0/__call__/wpe",
            "~/GPT2_0/__call__/h_0/__call__/ln_1_0/__call__/scale"])
        self.assertEqual(params["~/GPT2_0/__call__/h_1/__call__/attn_0/__call__/c_attn_0/"
                                "__call__/w"].shape, (16, 48))
        with self.assertRaisesRegex(mh.InvalidArgumentError, "num_heads must divide"):
            dataclasses.replace(_GPT2, num_heads=3)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "activation='swish'"):
            dataclasses.replace(_GPT2, activation="swish")


if __name__ == "__main__":
    absltest.main()
