"""6. Llama: train step and KV-cache decoding vs raw JAX; load_hf vs safetensors.

Rows: the jitted train step (next-token cross-entropy, SGD) of an 8-block
``mh.nets.Llama`` with ``scan_layers`` against the same network written by
hand in raw JAX (one ``jax.lax.scan`` over stacked weights), time and the
count of every optimized HLO op kind; greedy decoding tokens/s with the KV
cache against a hand-written JAX decode loop (both a jitted step in a Python
loop); and ``mh.interop.load_hf`` of a ~100M-param checkpoint against
``safetensors.numpy.load_file`` of the same file (time, and peak RSS growth
over the params' bytes, each measured in a fresh subprocess).
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import minihaiku as mh
from benchmarks import timing
from benchmarks.train_step import op_counts
from minihaiku import interop, nets

CONFIG = nets.LlamaConfig(vocab_size=2048, hidden_size=256, intermediate_size=688,
                          num_layers=8, num_heads=8, num_kv_heads=4, scan_layers=True)
SEQ, BATCH, LR = 128, 8, 1e-3
PROMPT, NEW_TOKENS = 16, 64
# ~100M params: 2 x 32000 x 768 tables + 8 blocks of 6.3M.
BIG = nets.LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                       num_layers=8, num_heads=12, num_kv_heads=4)

_PRE = "~/Llama_0/__call__/"
_BLOCK = _PRE + "layers_0/__call__/"
_NAMES = {"ln1": "input_layernorm_0/__call__/scale",
          "q": "self_attn_0/__call__/q_proj_0/__call__/w",
          "k": "self_attn_0/__call__/k_proj_0/__call__/w",
          "v": "self_attn_0/__call__/v_proj_0/__call__/w",
          "o": "self_attn_0/__call__/o_proj_0/__call__/w",
          "ln2": "post_attention_layernorm_0/__call__/scale",
          "gate": "mlp_0/__call__/gate_proj_0/__call__/w",
          "up": "mlp_0/__call__/up_proj_0/__call__/w",
          "down": "mlp_0/__call__/down_proj_0/__call__/w"}


def _raw_params(params):
    return {"embed": params[_PRE + "embed_tokens"], "norm": params[_PRE + "norm_0/__call__/scale"],
            "head": params[_PRE + "lm_head_0/__call__/w"],
            "layers": {k: params[_BLOCK + v] for k, v in _NAMES.items()}}


def _rms(x, scale, eps=CONFIG.rms_norm_eps):
    return scale * (x * jax.lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + eps))


def _rope(positions, dim, theta=CONFIG.rope_theta):
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], -1)
    return jnp.cos(angles), jnp.sin(angles)


def _rotate(x, cos, sin):
    # Per layer, the heads axis added as in transformers' apply_rotary_pos_emb.
    cos, sin = cos[..., None, :], sin[..., None, :]
    half = x.shape[-1] // 2
    return x * cos + jnp.concatenate([-x[..., half:], x[..., :half]], -1) * sin


def _raw_block(x, p, cos, sin, attend):
    b, t, _ = x.shape
    c, d = CONFIG, CONFIG.dims
    h = _rms(x, p["ln1"])
    q = _rotate((h @ p["q"]).reshape(b, t, c.num_heads, d), cos, sin)
    k = _rotate((h @ p["k"]).reshape(b, t, c.kv_heads, d), cos, sin)
    v = (h @ p["v"]).reshape(b, t, c.kv_heads, d)
    out, extra = attend(q, k, v)
    x = x + out.reshape(b, t, -1) @ p["o"]
    h = _rms(x, p["ln2"])
    return x + (jax.nn.silu(h @ p["gate"]) * (h @ p["up"])) @ p["down"], extra


def raw_forward(params, tokens):
    """The Llama by hand: embed, a scan over the stacked blocks, norm, head."""
    cos, sin = _rope(jnp.arange(tokens.shape[1])[None], CONFIG.dims)
    scale = 1.0 / CONFIG.dims ** 0.5

    def attend(q, k, v):  # as mh.nets computes it
        with jax.softmax_custom_jvp(True):
            return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True), None

    def layer(x, p):
        return _raw_block(x, p, cos, sin, attend)

    x = jax.lax.scan(layer, jnp.take(params["embed"], tokens, axis=0), params["layers"])[0]
    return _rms(x, params["norm"]) @ params["head"]


def raw_decode_step(params, cache, tokens):
    """One decoding call by hand: ``cache = (keys, values, index)``, keys ``[L, B, S, Hkv, D]``."""
    keys, values, index = cache
    t, size = tokens.shape[1], keys.shape[2]
    cos, sin = _rope(index + jnp.arange(t)[None], CONFIG.dims)
    visible = jnp.arange(size)[None, :] <= (index + jnp.arange(t))[:, None]
    scale = 1.0 / CONFIG.dims ** 0.5

    def layer(x, xs):
        p, layer_k, layer_v = xs

        def attend(q, k, v):
            ks = jax.lax.dynamic_update_slice(layer_k, k, (0, index, 0, 0))
            vs = jax.lax.dynamic_update_slice(layer_v, v, (0, index, 0, 0))
            out = jax.nn.dot_product_attention(q, ks, vs, scale=scale,
                                               mask=visible[None, None])
            return out, (ks, vs)

        return _raw_block(x, p, cos, sin, attend)

    x = jnp.take(params["embed"], tokens, axis=0)
    x, (keys, values) = jax.lax.scan(layer, x, (params["layers"], keys, values))
    return _rms(x, params["norm"]) @ params["head"], (keys, values, index + t)


def _loss(forward):
    def loss(params, tokens):
        logits = forward(params, tokens[:, :-1])
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], -1))
    return loss


def _step(loss):
    @jax.jit
    def step(params, tokens):
        value, grads = jax.value_and_grad(loss)(params, tokens)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
    return step


def _train_rows(rows, params, tokens):
    f = mh.without_apply_rng(mh.transform(lambda t: nets.Llama(CONFIG)(t)))
    raw = _raw_params(params)
    mh_step, raw_step = _step(_loss(f.apply)), _step(_loss(raw_forward))
    mh_value, _ = mh_step(params, tokens)
    raw_value, _ = raw_step(raw, tokens)
    assert abs(float(mh_value) - float(raw_value)) < 1e-4, (mh_value, raw_value)
    hlo_mh = op_counts(mh_step.lower(params, tokens).compile().as_text())
    hlo_raw = op_counts(raw_step.lower(raw, tokens).compile().as_text())
    t = timing.interleaved({"raw": lambda: raw_step(raw, tokens),
                            "mh": lambda: mh_step(params, tokens)}, calls=3, rounds=5)
    name = (f"Llama train step, {CONFIG.num_layers} blocks scan_layers, w{CONFIG.hidden_size} "
            f"h{CONFIG.num_heads}/kv{CONFIG.kv_heads} seq {SEQ} batch {BATCH}")
    rows.append((name, "minihaiku / raw JAX", t["mh"] / t["raw"], "<= 1.02",
                 f"{t['mh'] * 1e3:.1f} ms vs {t['raw'] * 1e3:.1f} ms"))
    same = hlo_mh == hlo_raw
    diff = {k: (hlo_mh[k], hlo_raw[k]) for k in hlo_mh.keys() | hlo_raw.keys()
            if hlo_mh[k] != hlo_raw[k]}
    rows.append(("optimized HLO of that Llama step", "same count of every op kind",
                 1.0 if same else 0.0, "same",
                 f"{sum(hlo_mh.values())} ops, identical counts" if same
                 else f"differs (mh, raw): {diff}"))


def _decode_rows(rows, params, prompt):
    config = dataclasses.replace(CONFIG, cache_size=PROMPT + NEW_TOKENS)
    f = mh.without_apply_rng(
        mh.transform_with_state(lambda t: nets.Llama(config)(t, decode=True)))
    mh_step, raw_step = jax.jit(f.apply), jax.jit(raw_decode_step)
    raw = _raw_params(params)
    cache_shape = (CONFIG.num_layers, prompt.shape[0], config.cache_size, CONFIG.kv_heads,
                   CONFIG.dims)

    empty = nets.init_cache(f, prompt)

    def mh_generate():
        logits, state = mh_step(params, empty, prompt)
        out = []
        for _ in range(NEW_TOKENS):
            out.append(jnp.argmax(logits[:, -1], -1))
            logits, state = mh_step(params, state, out[-1][:, None])
        return jnp.stack(out, 1)

    raw_empty = (jnp.zeros(cache_shape), jnp.zeros(cache_shape), jnp.int32(0))

    def raw_generate():
        logits, cache = raw_step(raw, raw_empty, prompt)
        out = []
        for _ in range(NEW_TOKENS):
            out.append(jnp.argmax(logits[:, -1], -1))
            logits, cache = raw_step(raw, cache, out[-1][:, None])
        return jnp.stack(out, 1)

    np.testing.assert_array_equal(mh_generate(), raw_generate())
    t = timing.interleaved({"raw": raw_generate, "mh": mh_generate}, calls=2, rounds=10)
    tokens = NEW_TOKENS * prompt.shape[0]
    rows.append((f"Llama greedy decoding with the KV cache, {NEW_TOKENS} tokens after a "
                 f"{PROMPT}-token prompt, batch {prompt.shape[0]}",
                 "minihaiku / raw JAX tokens per second", t["raw"] / t["mh"], ">= 0.98",
                 f"{tokens / t['mh']:.0f} vs {tokens / t['raw']:.0f} tokens/s"))


_MEASURE = r"""
import json, sys, time
import jax, numpy as np
jax.devices()
import minihaiku as mh
from minihaiku import interop
from safetensors.numpy import load_file

def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))

how, path = sys.argv[1], sys.argv[2]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # Resets the peak (VmHWM) to the current RSS.
before = status("VmRSS")
start = time.perf_counter()
if how == "numpy":
    out = load_file(path + "/model.safetensors")
else:
    mesh = mh.sharding.mesh("model:8") if how == "sharded" else None
    rules = [(r"(q_proj|k_proj|v_proj|gate_proj|up_proj|lm_head)_0/__call__/w$",
              jax.sharding.PartitionSpec(None, "model")),
             (r"(o_proj|down_proj)_0/__call__/w$", jax.sharding.PartitionSpec("model", None)),
             (r"embed_tokens$", jax.sharding.PartitionSpec("model", None))] if mesh else None
    out = interop.load_hf(path, mesh=mesh, rules=rules)[1]
    jax.block_until_ready(out)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "growth": status("VmHWM") - before}))
"""


def _measure(how, directory):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        + [p for p in [env.get("PYTHONPATH")] if p])
    if how == "sharded":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    out = subprocess.run([sys.executable, "-c", _MEASURE, how, directory], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load_rows(rows):
    f = mh.transform(lambda t: nets.Llama(BIG)(t))
    shapes = jax.eval_shape(f.init, 0, jnp.zeros((1, 1), jnp.int32))
    rng = np.random.default_rng(0)
    params = {p: rng.standard_normal(s.shape, np.float32) for p, s in shapes.items()}
    size = sum(v.nbytes for v in params.values())
    with tempfile.TemporaryDirectory() as d:
        interop.save_hf(d, BIG, params)
        del params
        best: dict = {}
        for _ in range(3):  # Interleaved fresh processes, the file in the page cache.
            for how in ("numpy", "load_hf", "sharded"):
                m = _measure(how, d)
                if how not in best or m["seconds"] < best[how]["seconds"]:
                    best[how] = {"seconds": m["seconds"], "growth": m["growth"]}
    n = size // 4
    name = f"load_hf of a {n / 1e6:.0f}M-param Llama checkpoint ({size / 2**20:.0f} MiB fp32)"
    t_np, t_mh = best["numpy"]["seconds"], best["load_hf"]["seconds"]
    rows.append((name, "load_hf / safetensors load_file (numpy) time", t_mh / t_np, "<= 1.2",
                 f"{t_mh:.2f} s vs {t_np:.2f} s"))
    rows.append((name, "peak RSS growth / params bytes, one device",
                 best["load_hf"]["growth"] / size, "<= 1.1",
                 f"{best['load_hf']['growth'] / 2**20:.0f} MiB (numpy load_file: "
                 f"{best['numpy']['growth'] / 2**20:.0f} MiB)"))
    rows.append((name + ", sharded over 8 host devices",
                 "peak RSS growth / params bytes (all 8 shares in one process)",
                 best["sharded"]["growth"] / size, "<= 1.1",
                 f"{best['sharded']['growth'] / 2**20:.0f} MiB in "
                 f"{best['sharded']['seconds']:.2f} s"))


def run(rows: list) -> None:
    tokens = jax.random.randint(jax.random.PRNGKey(1), (BATCH, SEQ + 1), 0, CONFIG.vocab_size)
    f = mh.transform(lambda t: nets.Llama(CONFIG)(t))
    params = jax.jit(f.init)(0, tokens[:, :-1])
    _train_rows(rows, params, tokens)
    _decode_rows(rows, params, tokens[:1, :PROMPT])
    _load_rows(rows)
