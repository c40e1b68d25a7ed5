"""Timing helpers shared by the benchmarks: interleaved best-of-N runs."""

import time
from collections.abc import Callable

import jax


def seconds_per_call(fn: Callable[[], object], calls: int) -> float:
    """Wall seconds per call of ``fn``, over ``calls`` calls, results awaited."""
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def interleaved(fns: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Best seconds per call of each fn, the fns taking turns round by round.

    Taking turns spreads machine noise evenly over the contenders, so their
    ratio is fair even on a busy machine; the minimum over rounds is the
    least disturbed estimate.
    """
    for fn in fns.values():  # warm up: compile, fill caches
        jax.block_until_ready(fn())
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], seconds_per_call(fn, calls))
    return best


def compile_seconds(fn, *args) -> float:
    """Seconds to trace, lower and compile ``jax.jit(fn)`` for ``args``."""
    start = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - start
