"""6. What interceptors, precision policies and profiler names cost, used and unused.

Eager apply and tracing of the 128-layer net of ``eager.py`` against the same
math in raw JAX, with nothing registered, with a no-op getter, and with
profiler names on; micro costs per call; and the optimized HLO of a jitted
train step with a policy set and cleared (it must equal raw JAX's).
"""

import jax
import jax.numpy as jnp

import minihaiku as mh
from benchmarks import micro, timing, train_step
from benchmarks.eager import BATCH, LAYERS, WIDTH, _mh_net, _raw_net


def _noop_getter(next_getter, value, ctx):
    return next_getter(value)


def _net_with_getter(x):
    with mh.custom_getter(_noop_getter):
        return _mh_net(x)


def _micro_rows(rows: list) -> None:
    params = {"~/w": jnp.zeros(2)}
    noop = micro._Noop

    def method_call():
        m = noop()
        for _ in range(micro.N):
            m(1)

    def get_param():
        for _ in range(micro.N):
            mh.get_param("w", (2,))

    def with_getter(f):
        def g():
            with mh.custom_getter(_noop_getter):
                f()
        return g

    cases = [("method call", method_call, False), ("get_param in apply", get_param, False),
             ("method call, no-op getter active", with_getter(method_call), False),
             ("get_param in apply, no-op getter active", with_getter(get_param), False),
             ("method call, profiler names on (eager)", method_call, True)]
    for name, f, names in cases:
        apply = mh.transform(f).apply
        with mh.config.override(profiler_names=names):
            us = micro._per_call(lambda p, apply=apply: apply(p, None), params)
        rows.append((f"micro: {name}", "µs per call", us, "", ""))


def run(rows: list) -> None:
    x = jnp.ones((BATCH, WIDTH))
    init, apply = mh.transform(_mh_net)
    params = init(0, x)
    layers = [(params[f"~/Linear_{i}/__call__/w"], params[f"~/Linear_{i}/__call__/b"])
              for i in range(LAYERS)]
    getter_apply = mh.transform(_net_with_getter).apply

    def names_on(fn):
        def run_named():
            with mh.config.override(profiler_names=True):
                return fn()
        return run_named

    plain = lambda: apply(params, None, x)  # noqa: E731
    t = timing.interleaved({"raw": lambda: _raw_net(layers, x), "plain": plain,
                            "getter": lambda: getter_apply(params, None, x),
                            "names": names_on(plain)}, calls=10, rounds=15)
    raw = t["raw"]
    for key, what in (("plain", "nothing registered"), ("getter", "a no-op getter"),
                      ("names", "profiler names on")):
        rows.append((f"eager apply 128x tanh(Linear(16)), {what}", "minihaiku / raw JAX",
                     t[key] / raw, "<= 1.3", f"{t[key] * 1e3:.2f} ms vs {raw * 1e3:.2f} ms"))

    def tracer(fn, *args):
        def trace():
            jax.make_jaxpr(fn)(*args)
        return trace

    ours = tracer(lambda p: apply(p, None, x), params)
    tt = timing.interleaved({"raw": tracer(_raw_net, layers, x), "off": ours,
                             "on": names_on(ours)}, calls=1, rounds=15)
    for key, what in (("off", "names off"), ("on", "names on")):
        rows.append((f"trace (make_jaxpr) 128-layer apply, {what}", "minihaiku / raw JAX",
                     tt[key] / tt["raw"], "<= 1.1",
                     f"{tt[key] * 1e3:.1f} ms vs {tt['raw'] * 1e3:.1f} ms"))
    rows.append(("trace 128-layer apply", "names on / names off", tt["on"] / tt["off"], "",
                 ""))

    _micro_rows(rows)
    _hlo_row(rows)


def _hlo_row(rows: list) -> None:
    xs = jax.random.normal(jax.random.PRNGKey(1), (train_step.BATCH, train_step.IN))
    ys = jax.random.normal(jax.random.PRNGKey(2), (train_step.BATCH, 1))
    sizes = train_step.SIZES
    mh.precision.set_policy(mh.nn.MLP, "params=float32,compute=bfloat16,output=float32")
    mh.precision.clear_policies()
    init, apply = mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP(sizes)(x)))
    params = init(0, xs)
    raw_params = [(params[f"~/MLP_0/__call__/Linear_{i}/__call__/w"],
                   params[f"~/MLP_0/__call__/Linear_{i}/__call__/b"]) for i in range(len(sizes))]
    mh_step = train_step._step(train_step._loss_mh(apply))
    raw_step = train_step._step(train_step._loss_raw)
    ours = train_step.op_counts(mh_step.lower(params, xs, ys).compile().as_text())
    theirs = train_step.op_counts(raw_step.lower(raw_params, xs, ys).compile().as_text())
    rows.append(("jitted MLP train step, a policy set then cleared",
                 "optimized HLO same op counts as raw JAX", float(ours == theirs), "1",
                 f"{sum(ours.values())} vs {sum(theirs.values())} ops"))
