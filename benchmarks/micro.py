"""2. Micro costs of the frame machinery, in microseconds per call.

Each case is measured once (:func:`ours`, cached): this section reports the
plain cases next to dm-haiku's, ``interceptors.py`` the cases with a no-op
getter or profiler names on.
"""

import functools
import time

import jax
import jax.numpy as jnp

import minihaiku as mh
from benchmarks import peers

N = 20000


class _Noop(mh.Module):
    def __call__(self, x):
        return x


def _per_call(transformed_apply, params, repeats=5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        transformed_apply(params)
        best = min(best, time.perf_counter() - start)
    return best / N * 1e6


def _noop_getter(next_getter, value, ctx):
    return next_getter(value)


def _with_getter(f):
    def g():
        with mh.custom_getter(_noop_getter):
            f()
    return g


@functools.cache
def ours() -> dict:
    """{case: µs per call} for every minihaiku case, measured once."""
    def construct_and_call():
        for _ in range(N):
            _Noop()(1)

    def method_call():
        m = _Noop()
        for _ in range(N):
            m(1)

    def get_param():
        for _ in range(N):
            mh.get_param("w", (2,))

    params = {"~/w": jnp.zeros(2)}
    out = {}
    for name, f, names in (
            ("module construction + call", construct_and_call, False),
            ("method call on existing module", method_call, False),
            ("get_param in apply", get_param, False),
            ("method call, no-op getter active", _with_getter(method_call), False),
            ("get_param in apply, no-op getter active", _with_getter(get_param), False),
            ("method call, profiler names on (eager)", method_call, True)):
        apply = mh.transform(f).apply
        with mh.config.override(profiler_names=names):
            out[name] = _per_call(lambda p, apply=apply: apply(p, None), params)
    return out


PLAIN = ("module construction + call", "method call on existing module", "get_param in apply")


def _haiku() -> dict:
    hk = peers.hk

    class Noop(hk.Module):
        def __call__(self, x):
            return x

    def construct_and_call():
        for _ in range(N):
            Noop()(1)

    def method_call():
        m = Noop()
        for _ in range(N):
            m(1)

    def get_param():
        for _ in range(N):
            hk.get_parameter("w", (2,), init=jnp.zeros)

    params = {"~": {"w": jnp.zeros(2)}}
    out = {}
    for name, f in (("module construction + call", construct_and_call),
                    ("method call on existing module", method_call),
                    ("get_param in apply", get_param)):
        apply = hk.transform(f).apply
        out[name] = _per_call(lambda p, apply=apply: apply(p, None), params, repeats=2)
    return out


def run(rows: list) -> None:
    measured = ours()
    theirs = _haiku() if peers.hk else {}
    for name in PLAIN:
        us, ref = measured[name], theirs.get(name)
        rows.append((f"micro: {name}", "µs per call", us, "",
                     f"dm-haiku {ref:.2f} µs ({us / ref:.2f}x)" if ref else ""))
    jax.block_until_ready(jnp.zeros(1))
