"""1. Eager (un-jitted) apply and init of a deep narrow MLP: the per-op overhead.

Every eager apply of this net is timed once, in one interleaved run
(:func:`apply_times`): raw JAX, minihaiku plain, with a no-op getter and with
profiler names on, dm-haiku and flax.linen. This section reports the plain and
peer rows, ``interceptors.py`` the getter and profiler-names rows, so a
quantity never appears twice with two values.
"""

import functools

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


def _hk_net(x):
    for _ in range(LAYERS):
        x = jnp.tanh(peers.hk.Linear(WIDTH)(x))
    return x


def _noop_getter(next_getter, value, ctx):
    return next_getter(value)


def _net_with_getter(x):
    with mh.custom_getter(_noop_getter):
        return _mh_net(x)


def names_on(fn):
    def run_named():
        with mh.config.override(profiler_names=True):
            return fn()
    return run_named


@functools.cache
def apply_times() -> dict:
    """Best seconds per eager apply of every contender, measured together once."""
    x = jnp.ones((BATCH, WIDTH))
    init, apply = mh.transform(_mh_net)
    params = init(0, x)
    layers = [(params[f"~/Linear_{i}/__call__/w"], params[f"~/Linear_{i}/__call__/b"])
              for i in range(LAYERS)]
    getter_apply = mh.transform(_net_with_getter).apply
    plain = lambda: apply(params, None, x)  # noqa: E731
    contenders = {"raw JAX": lambda: _raw_net(layers, x), "minihaiku": plain,
                  "minihaiku, a no-op getter": lambda: getter_apply(params, None, x),
                  "minihaiku, profiler names on": names_on(plain)}
    if peers.hk:
        hk = peers.hk
        hk_f = hk.without_apply_rng(hk.transform(_hk_net))
        hk_params = hk_f.init(jax.random.PRNGKey(0), x)
        contenders["dm-haiku"] = lambda: hk_f.apply(hk_params, x)
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
    return timing.interleaved(contenders, calls=10, rounds=15)


def run(rows: list) -> None:
    t = apply_times()
    raw, ours = t["raw JAX"], t["minihaiku"]
    rows.append(("eager apply, 128x tanh(Linear(16)), batch 4", "minihaiku / raw JAX",
                 ours / raw, "<= 1.3", f"{ours * 1e3:.2f} ms vs {raw * 1e3:.2f} ms"))
    for peer in ("dm-haiku", "flax.linen"):
        if peer in t:
            rows.append(("eager apply, same net", f"minihaiku / {peer}", ours / t[peer], "",
                         f"{peer} {t[peer] * 1e3:.2f} ms = {t[peer] / raw:.1f}x raw JAX"))
    if peers.hk:
        x = jnp.ones((BATCH, WIDTH))
        init = mh.transform(_mh_net).init
        hk_init = peers.hk.transform(_hk_net).init
        ti = timing.interleaved({"minihaiku": lambda: init(0, x),
                                 "dm-haiku": lambda: hk_init(jax.random.PRNGKey(0), x)},
                                calls=3, rounds=8)
        rows.append(("eager init, same net", "minihaiku / dm-haiku",
                     ti["minihaiku"] / ti["dm-haiku"], "<= 0.5",
                     f"{ti['minihaiku'] * 1e3:.1f} ms vs {ti['dm-haiku'] * 1e3:.1f} ms"))
