"""4-5. Lifted transforms: layer_stack compile time, remat residuals, scanned LSTM."""

import jax
import jax.numpy as jnp
import numpy as np

import minihaiku as mh
from benchmarks import peers, timing

WIDTH = 64


def _block(x):
    h = mh.nn.LayerNorm()(x)
    h = jax.nn.gelu(mh.nn.Linear(WIDTH)(h))
    return x + mh.nn.Linear(WIDTH)(h)


def _stack_compile_seconds(layers: int, unrolled: bool = False) -> float:
    def f(x):
        if unrolled:
            for _ in range(layers):
                x = _block(x)
            return x
        return mh.lifted.layer_stack(layers)(_block)(x)

    x = jnp.ones((8, WIDTH))
    init, apply = mh.transform(f)
    params = jax.eval_shape(init, 0, x)
    return timing.compile_seconds(lambda p, x: apply(p, None, x), params, x)


def _layer_stack(rows: list) -> None:
    # Fresh functions each time, so no JAX cache answers; best of 3. One layer
    # is a one-step loop XLA removes, so 2 layers shows the flat part too.
    one, two, many = (min(_stack_compile_seconds(n) for _ in range(3)) for n in (1, 2, 256))
    unrolled = _stack_compile_seconds(256, unrolled=True)
    rows.append(("compile layer_stack of residual blocks", "256 layers / 1 layer", many / one,
                 "<= 2.0", f"1: {one:.2f} s, 2: {two:.2f} s, 256: {many:.2f} s; "
                 f"256 unrolled {unrolled:.1f} s ({unrolled / one:.0f}x)"))


def residual_bytes(f, params) -> tuple:
    """Bytes ``jax.vjp`` keeps for the backward pass of ``f`` at ``params``.

    Returns all of them, and those that are not ``params`` themselves.
    """
    _, vjp_fn = jax.vjp(f, params)
    leaves = jax.tree_util.tree_leaves(vjp_fn)
    inputs = {id(v) for v in jax.tree_util.tree_leaves(params)}
    total = sum(leaf.nbytes for leaf in leaves)
    return total, total - sum(leaf.nbytes for leaf in leaves if id(leaf) in inputs)


def _remat(rows: list) -> None:
    def net(remat):
        def f(x):
            def block(x):
                for _ in range(4):
                    x = jnp.tanh(mh.nn.Linear(256)(x))
                return x
            for _ in range(4):
                x = (mh.lifted.remat(block) if remat else block)(x)
            return x
        return mh.without_apply_rng(mh.transform(f))

    x = jnp.ones((1024, 256))
    plain, remat = net(False), net(True)
    params = plain.init(0, x)
    loss = lambda t: lambda p: jnp.sum(t.apply(p, x))  # noqa: E731
    (without, acts_without), (with_remat, acts_with) = (
        residual_bytes(loss(plain), params), residual_bytes(loss(remat), params))
    rows.append(("remat around 4 blocks of 4 tanh(Linear(256)), batch 1024",
                 "residual bytes with / without", with_remat / without, "<= 0.5",
                 f"{with_remat / 2**20:.1f} MiB vs {without / 2**20:.1f} MiB; without the "
                 f"params themselves {acts_with / acts_without:.3f}"))


def _lstm(rows: list) -> None:
    steps, batch, hidden = 128, 16, 64
    xs = jnp.asarray(np.random.RandomState(0).normal(size=(steps, batch, 8)), jnp.float32)

    def ours(xs):
        core = mh.nn.LSTM(hidden)
        out, _ = mh.nn.dynamic_unroll(core, xs, core.initial_state(batch))
        return out

    f = mh.without_apply_rng(mh.transform(ours))
    params = f.init(0, xs)
    contenders = {"minihaiku": (jax.jit(f.apply), params)}
    if peers.hk:
        hk = peers.hk

        def theirs(xs):
            core = hk.LSTM(hidden)
            out, _ = hk.dynamic_unroll(core, xs, core.initial_state(batch))
            return out

        g = hk.without_apply_rng(hk.transform(theirs))
        contenders["dm-haiku"] = (jax.jit(g.apply), g.init(jax.random.PRNGKey(0), xs))
    t = timing.interleaved({k: (lambda fn=fn, p=p: fn(p, xs)) for k, (fn, p) in contenders.items()},
                           calls=20, rounds=7)
    if "dm-haiku" in t:
        rows.append(("jitted dynamic_unroll(LSTM(64)), T=128, batch 16", "minihaiku / dm-haiku",
                     t["minihaiku"] / t["dm-haiku"], "",
                     f"{t['minihaiku'] * 1e3:.2f} ms vs {t['dm-haiku'] * 1e3:.2f} ms"))


def _eager_loops(rows: list) -> None:
    """Eager apply of a 10-step scan / fori_loop, with and without the eager cache."""
    x = jnp.ones((8, 16))

    def scanned(x):
        w = mh.get_param("w", (16, 16))
        return mh.lifted.scan(lambda c, xi: (jnp.tanh(c @ w + xi), None), x,
                              jnp.ones((10, 8, 16)))[0]

    def looped(x):
        w = mh.get_param("w", (16, 16))
        return mh.lifted.fori_loop(0, 10, lambda i, c: jnp.tanh(c @ w), x)

    for name, f in (("scan", scanned), ("fori_loop", looped)):
        t = mh.transform(f)
        params = t.init(0, x)

        def uncached(t=t, params=params):
            with mh.lifted.eager_cache(False):
                return t.apply(params, None, x)

        t.apply(params, None, x)  # compiles once; later calls reuse the executable
        cached = timing.seconds_per_call(lambda t=t, params=params: t.apply(params, None, x), 20)
        cold = timing.seconds_per_call(uncached, 3)
        rows.append((f"eager apply of a 10-step lifted {name}", "cache on / off", cached / cold,
                     "<= 0.05", f"{cached * 1e3:.2f} ms vs {cold * 1e3:.0f} ms"))


def run(rows: list) -> None:
    _eager_loops(rows)
    _layer_stack(rows)
    _remat(rows)
    _lstm(rows)
