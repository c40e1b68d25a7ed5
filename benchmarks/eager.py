"""1. Eager (un-jitted) apply and init of a deep narrow MLP: the per-op overhead."""

import jax
import jax.numpy as jnp

import minihaiku as mh
from benchmarks import peers, timing

LAYERS, WIDTH, BATCH = 128, 16, 4


def _mh_net(x):
    for _ in range(LAYERS):
        x = jnp.tanh(mh.nn.Linear(WIDTH)(x))
    return x


def _raw_net(layers, x):
    for w, b in layers:
        x = jnp.tanh(x @ w + b)
    return x


def run(rows: list) -> None:
    x = jnp.ones((BATCH, WIDTH))
    init, apply = mh.transform(_mh_net)
    params = init(0, x)
    layers = [(params[f"~/Linear_{i}/__call__/w"], params[f"~/Linear_{i}/__call__/b"])
              for i in range(LAYERS)]
    contenders = {"raw JAX": lambda: _raw_net(layers, x),
                  "minihaiku": lambda: apply(params, None, x)}
    inits = {"minihaiku": lambda: init(0, x)}
    if peers.hk:
        hk = peers.hk

        def hk_net(x):
            for _ in range(LAYERS):
                x = jnp.tanh(hk.Linear(WIDTH)(x))
            return x

        hk_f = hk.without_apply_rng(hk.transform(hk_net))
        hk_params = hk_f.init(jax.random.PRNGKey(0), x)
        contenders["dm-haiku"] = lambda: hk_f.apply(hk_params, x)
        inits["dm-haiku"] = lambda: hk_f.init(jax.random.PRNGKey(0), x)
    if peers.linen:
        nn = peers.linen

        class FlaxNet(nn.Module):
            @nn.compact
            def __call__(self, x):
                for _ in range(LAYERS):
                    x = jnp.tanh(nn.Dense(WIDTH)(x))
                return x

        flax_net = FlaxNet()
        flax_params = flax_net.init(jax.random.PRNGKey(0), x)
        contenders["flax.linen"] = lambda: flax_net.apply(flax_params, x)
    t = timing.interleaved(contenders, calls=10, rounds=7)
    raw, ours = t["raw JAX"], t["minihaiku"]
    rows.append(("eager apply, 128x tanh(Linear(16)), batch 4", "minihaiku / raw JAX",
                 ours / raw, "<= 2.0", f"{ours * 1e3:.2f} ms vs {raw * 1e3:.2f} ms"))
    for peer in ("dm-haiku", "flax.linen"):
        if peer in t:
            rows.append(("eager apply, same net", f"minihaiku / {peer}", ours / t[peer], "",
                         f"{peer} {t[peer] * 1e3:.2f} ms = {t[peer] / raw:.1f}x raw JAX"))
    if "dm-haiku" in inits:
        ti = timing.interleaved(inits, calls=3, rounds=8)
        rows.append(("eager init, same net", "minihaiku / dm-haiku",
                     ti["minihaiku"] / ti["dm-haiku"], "<= 0.5",
                     f"{ti['minihaiku'] * 1e3:.1f} ms vs {ti['dm-haiku'] * 1e3:.1f} ms"))
