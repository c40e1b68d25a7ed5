"""6. What interceptors, precision policies and profiler names cost, used and unused.

Eager apply of the 128-layer net of ``eager.py`` with a no-op getter and with
profiler names on (measured once, together with ``eager.py``'s plain apply);
tracing it against the same math in raw JAX; micro costs per call (measured
once, with ``micro.py``'s); and the optimized HLO of a jitted train step with
a policy set and cleared (it must equal raw JAX's).
"""

import jax
import jax.numpy as jnp

import minihaiku as mh
from benchmarks import eager, micro, timing, train_step
from benchmarks.eager import BATCH, LAYERS, WIDTH, _mh_net, _raw_net


def run(rows: list) -> None:
    t = eager.apply_times()  # Measured once, with the plain apply of eager.py's rows.
    raw = t["raw JAX"]
    for key in ("minihaiku, a no-op getter", "minihaiku, profiler names on"):
        rows.append((f"eager apply 128x tanh(Linear(16)), {key.split(', ')[1]}",
                     "minihaiku / raw JAX", t[key] / raw, "<= 1.3",
                     f"{t[key] * 1e3:.2f} ms vs {raw * 1e3:.2f} ms"))
    x = jnp.ones((BATCH, WIDTH))
    init, apply = mh.transform(_mh_net)
    params = init(0, x)
    layers = [(params[f"~/Linear_{i}/__call__/w"], params[f"~/Linear_{i}/__call__/b"])
              for i in range(LAYERS)]

    def tracer(fn, *args):
        def trace():
            jax.make_jaxpr(fn)(*args)
        return trace

    ours = tracer(lambda p: apply(p, None, x), params)
    tt = timing.interleaved({"raw": tracer(_raw_net, layers, x), "off": ours,
                             "on": eager.names_on(ours)}, calls=1, rounds=15)
    for key, what in (("off", "names off"), ("on", "names on")):
        rows.append((f"trace (make_jaxpr) 128-layer apply, {what}", "minihaiku / raw JAX",
                     tt[key] / tt["raw"], "<= 1.1",
                     f"{tt[key] * 1e3:.1f} ms vs {tt['raw'] * 1e3:.1f} ms"))
    rows.append(("trace 128-layer apply", "names on / names off", tt["on"] / tt["off"], "",
                 ""))

    measured = micro.ours()
    for name in measured:
        if name not in micro.PLAIN:
            rows.append((f"micro: {name}", "µs per call", measured[name], "", ""))
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
