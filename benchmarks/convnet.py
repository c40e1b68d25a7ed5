"""A jitted SGD train step of a small ConvNet: minihaiku vs raw JAX and peers.

Conv2D 3x3 (x3, relu) + 2x2 max pool + Linear(10) on a batch of 64 32x32x3
images. The time ratio to the same math in raw ``jax.lax`` (interleaved
runs) and the count of every optimized HLO op kind are compared; dm-haiku
and flax.linen run the same model.
"""

import jax
import jax.numpy as jnp

import minihaiku as mh
from benchmarks import peers, timing
from benchmarks.train_step import op_counts

BATCH, SIZE, CHANNELS, CLASSES, LR = 64, 32, 32, 10, 1e-3
_DN = ("NHWC", "HWIO", "NHWC")


def _xent(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))


def _mh_net(x):
    for _ in range(3):
        x = jax.nn.relu(mh.nn.Conv2D(CHANNELS, 3)(x))
    x = mh.nn.max_pool(x, 2, 2, "VALID")
    return mh.nn.Linear(CLASSES)(x.reshape(x.shape[0], -1))


def _raw_net(params, x):
    convs, (w, b) = params
    for cw, cb in convs:
        x = jax.nn.relu(jax.lax.conv_general_dilated(x, cw, (1, 1), "SAME",
                                                     dimension_numbers=_DN) + cb)
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return x.reshape(x.shape[0], -1) @ w + b


def _step(apply):
    def loss(params, x, y):
        return _xent(apply(params, x), y)

    @jax.jit
    def step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
    return step


def _peer_steps(x, y) -> dict:
    steps = {}
    if peers.hk:
        hk = peers.hk

        def hk_net(x):
            for _ in range(3):
                x = jax.nn.relu(hk.Conv2D(CHANNELS, 3)(x))
            x = hk.max_pool(x, (2, 2, 1), (2, 2, 1), "VALID")
            return hk.Linear(CLASSES)(x.reshape(x.shape[0], -1))

        f = hk.without_apply_rng(hk.transform(hk_net))
        hk_params, hk_step = f.init(jax.random.PRNGKey(0), x), _step(f.apply)
        steps["dm-haiku"] = lambda: hk_step(hk_params, x, y)
    if peers.linen:
        nn = peers.linen

        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                for _ in range(3):
                    x = nn.relu(nn.Conv(CHANNELS, (3, 3))(x))
                x = nn.max_pool(x, (2, 2), (2, 2))
                return nn.Dense(CLASSES)(x.reshape(x.shape[0], -1))

        net = Net()
        flax_params = net.init(jax.random.PRNGKey(0), x)
        flax_step = _step(net.apply)
        steps["flax.linen"] = lambda: flax_step(flax_params, x, y)
    return steps


def run(rows: list) -> None:
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, SIZE, SIZE, 3))
    y = jax.random.randint(jax.random.PRNGKey(2), (BATCH,), 0, CLASSES)
    init, apply = mh.without_apply_rng(mh.transform(_mh_net))
    params = init(0, x)
    convs = [(params[f"~/Conv2D_{i}/__call__/w"], params[f"~/Conv2D_{i}/__call__/b"])
             for i in range(3)]
    raw_params = (convs, (params["~/Linear_0/__call__/w"], params["~/Linear_0/__call__/b"]))
    mh_step, raw_step = _step(apply), _step(_raw_net)
    hlo_mh = op_counts(mh_step.lower(params, x, y).compile().as_text())
    hlo_raw = op_counts(raw_step.lower(raw_params, x, y).compile().as_text())
    contenders = {"raw": lambda: raw_step(raw_params, x, y),
                  "mh": lambda: mh_step(params, x, y), **_peer_steps(x, y)}
    t = timing.interleaved(contenders, calls=5, rounds=7)
    name = "jitted SGD step, ConvNet (Conv2D 3x3 x3 + max pool + Linear), batch 64, 32x32x3"
    rows.append((name, "minihaiku / raw JAX", t["mh"] / t["raw"], "<= 1.02",
                 f"{t['mh'] * 1e3:.2f} ms vs {t['raw'] * 1e3:.2f} ms"))
    same = hlo_mh == hlo_raw
    diff = {k: (hlo_mh[k], hlo_raw[k]) for k in hlo_mh.keys() | hlo_raw.keys()
            if hlo_mh[k] != hlo_raw[k]}
    rows.append(("optimized HLO of that ConvNet step", "same count of every op kind",
                 1.0 if same else 0.0, "same",
                 f"{sum(hlo_mh.values())} ops, identical counts" if same
                 else f"differs (mh, raw): {diff}"))
    for peer in ("dm-haiku", "flax.linen"):
        if peer in t:
            rows.append((name, f"minihaiku / {peer}", t["mh"] / t[peer], "<= 1.0",
                         f"{t['mh'] * 1e3:.2f} ms vs {t[peer] * 1e3:.2f} ms"))
