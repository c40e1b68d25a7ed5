"""3. A jitted SGD train step: minihaiku vs the same math in raw JAX.

Both the time ratio (interleaved runs) and the optimized HLO (count of every
op kind) are compared: the library should vanish under ``jax.jit``.
"""

import collections
import re

import jax
import jax.numpy as jnp

import minihaiku as mh
from benchmarks import timing

SIZES, BATCH, IN, LR = (256, 256, 256, 1), 512, 32, 1e-3


def _loss_mh(apply):
    def loss(params, x, y):
        return jnp.mean((apply(params, x) - y) ** 2)
    return loss


def _loss_raw(params, x, y):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return jnp.mean((x - y) ** 2)


def _step(loss):
    @jax.jit
    def step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
    return step


_OP = re.compile(r"=\s*[^=]*?\s([a-z][a-z0-9\-_.]*)\(")


def op_counts(compiled_text: str) -> collections.Counter:
    """Counts HLO instructions by op kind (``add``, ``dot``, ``fusion``, ...)."""
    return collections.Counter(m.group(1) for line in compiled_text.splitlines()
                               if (m := _OP.search(line)) and "ROOT" not in line[:4])


def run(rows: list) -> None:
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, IN))
    y = jax.random.normal(jax.random.PRNGKey(2), (BATCH, 1))
    init, apply = mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP(SIZES)(x)))
    params = init(0, x)
    raw_params = [(params[f"~/MLP_0/__call__/Linear_{i}/__call__/w"],
                   params[f"~/MLP_0/__call__/Linear_{i}/__call__/b"]) for i in range(len(SIZES))]
    mh_step, raw_step = _step(_loss_mh(apply)), _step(_loss_raw)
    hlo_mh = op_counts(mh_step.lower(params, x, y).compile().as_text())
    hlo_raw = op_counts(raw_step.lower(raw_params, x, y).compile().as_text())
    t = timing.interleaved({"raw": lambda: raw_step(raw_params, x, y),
                            "mh": lambda: mh_step(params, x, y)}, calls=20, rounds=9)
    rows.append(("jitted SGD step, MLP [256,256,256,1], batch 512", "minihaiku / raw JAX",
                 t["mh"] / t["raw"], "<= 1.05",
                 f"{t['mh'] * 1e3:.2f} ms vs {t['raw'] * 1e3:.2f} ms"))
    same = hlo_mh == hlo_raw
    diff = {k: (hlo_mh[k], hlo_raw[k]) for k in hlo_mh.keys() | hlo_raw.keys()
            if hlo_mh[k] != hlo_raw[k]}
    rows.append(("optimized HLO of that step", "same count of every op kind",
                 1.0 if same else 0.0, "same",
                 f"{sum(hlo_mh.values())} ops, identical counts" if same
                 else f"differs (mh, raw): {diff}"))
