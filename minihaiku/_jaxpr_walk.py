"""Walks a jaxpr traced with profiler names: every equation with its module path and count.

With ``mh.config.profiler_names`` on, each module method runs under
``jax.named_scope`` of its path relative to the enclosing method, so an
equation's name stack reads ``MLP_0/__call__/Linear_0/__call__`` (wrapped in
``jvp(...)``/``transpose(...)`` when differentiated). A sub-jaxpr (scan
body, jit, remat, custom derivative) starts a fresh name stack, so its
equations' names are relative to the equation that holds it.

``runs`` is how often an equation executes: the product of the lengths of the
scans around it (``layer_stack`` and ``mh.lifted.scan`` lower to scans). A
while loop's trip count is unknown before running; its body counts once, as
in XLA's own cost analysis, and is reported in ``Walk.while_loops``.
``cond``/``switch`` counts its most expensive branch (as XLA does).
"""

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

from minihaiku import _flops

_TRANSFORM = re.compile(r"[A-Za-z_][\w-]*\(")


@dataclasses.dataclass(frozen=True)
class Op:
    """One equation as executed: who runs it, how often, and what it costs per run."""

    segments: tuple       # the name-stack segments, e.g. ("MLP_0", "__call__")
    runs: int
    flops: int
    transcendentals: int
    out_bytes: int
    backward: bool        # from a transpose (the backward pass)
    eqn: Any


def segments(name_stack: Any) -> tuple[tuple, bool]:
    """``(segments, backward)`` of an equation's name stack."""
    text = str(name_stack)
    backward = "transpose(" in text
    plain = _TRANSFORM.sub("", text).replace(")", "")
    return tuple(s for s in plain.split("/") if s), backward


def walk(jaxpr: Any, prefix: tuple = (), runs: int = 1, backward: bool = False,
         on_while: Callable[[], None] | None = None) -> Iterator[Op]:
    """Yields an :class:`Op` per leaf equation of ``jaxpr`` (sub-jaxprs expanded)."""
    for eqn in jaxpr.eqns:
        own, back = segments(eqn.source_info.name_stack)
        path = own if own[:len(prefix)] == prefix and prefix else prefix + own
        back = back or backward
        name = eqn.primitive.name
        subs = _sub_jaxprs(eqn)
        if not subs:
            flops, trans = _flops.count(eqn)
            out = sum(nbytes(v.aval) for v in eqn.outvars)
            yield Op(path, runs, flops, trans, out, back, eqn)
            continue
        if name == "scan":
            yield from walk(subs[0], path, runs * int(eqn.params["length"]), back, on_while)
        elif name == "while":
            if on_while is not None:
                on_while()
            for sub in subs:
                yield from walk(sub, path, runs, back, on_while)
        elif name == "cond":
            branches = [list(walk(b, path, runs, back, on_while)) for b in subs]
            yield from max(branches, key=lambda ops: sum(o.flops * o.runs for o in ops))
        else:
            for sub in subs:
                yield from walk(sub, path, runs, back, on_while)


def _sub_jaxprs(eqn: Any) -> list:
    found = []
    for key, value in eqn.params.items():
        if eqn.primitive.name == "while" and key not in ("body_jaxpr", "cond_jaxpr"):
            continue
        for v in value if isinstance(value, (tuple, list)) else (value,):
            inner = getattr(v, "jaxpr", v)
            if hasattr(inner, "eqns"):
                found.append(inner)
    return found


def nbytes(aval: Any) -> int:
    """Bytes of an abstract value (0 for tokens and the like)."""
    shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return 0
    n = 1
    for d in shape:
        n *= int(d)
    return n * dtype.itemsize
