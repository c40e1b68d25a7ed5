"""A peak-memory estimate of a compiled function from its jaxpr, by buffer liveness.

XLA fuses chains of elementwise operations into the operation that consumes
them, so their intermediate values never exist in memory. The estimate keeps
as buffers only what survives fusion: results of dots, convolutions,
reductions, gathers and other non-fusible ops, loop outputs, and any value a
non-fusible op, a loop or the function's output reads (fusions write their
result to memory there). Each buffer lives from the operation that makes it
to the last operation that reads it, directly or through a fused chain. A
scan allocates its outputs (stacked per-iteration values, e.g. the residuals
a backward pass needs) when it starts and reuses its body's buffers across
iterations. The peak is arguments + outputs (less donated arguments reused
for outputs) + the most bytes of buffers alive at one time.
"""

from typing import Any

from minihaiku import _jaxpr_walk

# Elementwise and data-movement ops XLA fuses into their consumer.
_FUSIBLE = frozenset({
    "add", "add_any", "sub", "mul", "div", "rem", "neg", "max", "min", "abs", "sign", "floor",
    "ceil", "round", "select_n", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor",
    "convert_element_type", "clamp", "is_finite", "square", "integer_pow", "exp", "exp2",
    "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "sqrt", "rsqrt", "cbrt", "pow",
    "erf", "erf_inv", "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose",
    "iota", "copy", "copy_p", "stop_gradient", "slice", "pad", "concatenate", "rev",
    "reduce_precision", "nextafter", "atan2", "shift_left", "shift_right_logical",
    "shift_right_arithmetic", "population_count"})

_INLINE = ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
           "custom_vjp_call_jaxpr", "checkpoint", "remat", "custom_lin")


def peak_bytes(closed: Any, donated: tuple = ()) -> int:
    """Predicted peak device memory of ``jax.jit`` of the traced function, in bytes.

    ``donated`` flags the flattened arguments a jitted function donates.
    """
    jaxpr = closed.jaxpr
    donated_invars = donated
    if len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in ("jit", "pjit"):
        donated_invars = jaxpr.eqns[0].params.get("donated_invars")
    args = sum(_nbytes(v) for v in jaxpr.invars)
    outs = sum(_nbytes(v) for v in jaxpr.outvars if hasattr(v, "aval"))
    reused = 0
    if donated_invars:
        # A donated argument's buffer is reused by an output of its shape.
        free = [_nbytes(v) for v, d in zip(jaxpr.invars, donated_invars, strict=False) if d]
        for v in jaxpr.outvars:
            n = _nbytes(v)
            if n in free:
                free.remove(n)
                reused += n
    return args + outs - reused + _temp_peak(jaxpr)


def _temp_peak(jaxpr: Any) -> int:
    """The most bytes of intermediate buffers alive at once (not inputs or outputs)."""
    return _live_peak(_intervals(jaxpr))


def _intervals(jaxpr: Any) -> list:
    """``(first, last, bytes)`` of each intermediate buffer (not inputs or outputs)."""
    eqns = list(_inlined(jaxpr))
    outputs = {id(v) for v in jaxpr.outvars if hasattr(v, "aval")}
    inputs = {id(v) for v in (*jaxpr.invars, *jaxpr.constvars)}
    buffer: dict = {}
    sources: dict = {}
    last_use: dict = {}
    first_read: dict = {}
    for i, eqn in enumerate(eqns):
        reads = set()
        for v in eqn.invars:
            first_read.setdefault(id(v), i)
            if hasattr(v, "aval"):
                reads |= sources.get(id(v), {id(v)})
        fusible = eqn.primitive.name in _FUSIBLE
        for r in reads:
            last_use[r] = i
        for v in eqn.outvars:
            if fusible:
                sources[id(v)] = reads
            else:
                buffer[id(v)] = (i, _nbytes(v))
        if not fusible:
            # A fused chain ends here: the values it read from are written out.
            for v in eqn.invars:
                if hasattr(v, "aval") and id(v) in sources and id(v) not in buffer:
                    buffer[id(v)] = (i, _nbytes(v))
                    last_use[id(v)] = i
    for v in jaxpr.outvars:
        for r in sources.get(id(v), ()):
            last_use[r] = len(eqns)
    spans = [(start, last_use.get(var, start), size) for var, (start, size) in buffer.items()
             if var not in inputs and var not in outputs]

    def ready(v):
        return max((buffer.get(r, (0,))[0] for r in sources.get(id(v), {id(v)})), default=0)

    for i, eqn in enumerate(eqns):
        for v, n in _layout_copies(eqn):
            # XLA makes the copy as soon as its operand exists (in the forward pass).
            spans.append((ready(v), i, n))
        if eqn.primitive.name == "select_and_scatter_add":
            operand = eqn.invars[1]
            pool = first_read.get(id(operand), i)
            iotas, windows, scatter = _select_and_scatter_scratch(eqn)
            spans += [(ready(operand), pool, iotas), (pool, i, windows), (i, i, scatter)]
        if eqn.primitive.name in ("scan", "while"):
            body = _body(eqn)
            if body is not None:
                # A loop body's buffers are reused across iterations: one block.
                spans.append((i, i, _temp_peak(body)))
    return [s for s in spans if s[2]]


def _live_peak(spans: list) -> int:
    events: dict = {}
    for start, end, size in spans:
        events[start] = events.get(start, 0) + size
        events[end + 1] = events.get(end + 1, 0) - size
    peak = live = 0
    for t in sorted(events):
        live += events[t]
        peak = max(peak, live)
    return peak


def _layout_copies(eqn: Any) -> list:
    """``(operand, bytes)`` of the transposed operand copies XLA makes for a convolution.

    XLA's CPU convolutions take batch-major, feature-minor inputs and
    spatial-major kernels; an operand in another layout (as in the kernel
    gradient of a backward pass, where the batch is contracted) is copied
    into that layout.
    """
    if eqn.primitive.name != "conv_general_dilated":
        return []
    dn = eqn.params["dimension_numbers"]
    n = len(dn.lhs_spec)
    spatial = tuple(range(1, n - 1))
    copies = []
    if tuple(dn.lhs_spec) != (0, n - 1, *spatial):
        copies.append((eqn.invars[0], _nbytes(eqn.invars[0])))
    if tuple(dn.rhs_spec) != (n - 1, n - 2, *range(n - 2)):
        copies.append((eqn.invars[1], _nbytes(eqn.invars[1])))
    if tuple(dn.out_spec) != (0, n - 1, *spatial):
        copies.append((eqn.outvars[0], _nbytes(eqn.outvars[0])))
    return copies


def _select_and_scatter_scratch(eqn: Any) -> tuple:
    """Bytes of the buffers XLA's CPU rewrite of a max-pool gradient allocates.

    ``select_and_scatter`` becomes an argmax reduce-window over one int32
    iota per input dimension (each the input's size), done with the forward
    max pool, whose per-window index outputs live until the scatter, which
    takes an index array and the updates.
    """
    source, operand = eqn.invars[0].aval, eqn.invars[1].aval
    rank = len(operand.shape)
    source_elems = _jaxpr_walk.nbytes(source) // source.dtype.itemsize
    operand_elems = _jaxpr_walk.nbytes(operand) // operand.dtype.itemsize
    iotas = rank * operand_elems * 4
    windows = source_elems * (rank * 4 + operand.dtype.itemsize)
    scatter = source_elems * (rank * 4 + source.dtype.itemsize)
    return iotas, windows, scatter


def _body(eqn: Any) -> Any:
    key = "jaxpr" if eqn.primitive.name == "scan" else "body_jaxpr"
    body = eqn.params.get(key)
    return getattr(body, "jaxpr", body)


def _inlined(jaxpr: Any) -> Any:
    """The equations with calls (jit, remat, custom derivatives) expanded in place.

    Variables of an inlined body are renamed to the caller's by identity:
    the body's inputs stand for the call's operands.
    """
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        inner = getattr(inner, "jaxpr", inner)
        if name in _INLINE and inner is not None and hasattr(inner, "eqns"):
            yield from _renamed(inner, eqn)
        else:
            yield eqn


def _renamed(inner: Any, call: Any) -> Any:
    mapping = {id(a): b for a, b in zip(inner.invars, call.invars, strict=False)}
    through = []
    for a, b in zip(inner.outvars, call.outvars, strict=False):
        if id(a) in mapping or not hasattr(a, "aval"):
            through.append((a, b))
        else:
            mapping[id(a)] = b
    for eqn in _inlined(inner):
        yield eqn.replace(invars=[mapping.get(id(v), v) for v in eqn.invars],
                          outvars=[mapping.get(id(v), v) for v in eqn.outvars])
    for a, b in through:
        if id(a) in mapping:
            # An input passed straight through: a copy the size of the output.
            yield _Copy(mapping[id(a)], b)


class _Copy:
    """A stand-in equation ``out = in`` for a value a call passes through."""

    class primitive:  # noqa: N801  (mimics a jax primitive)
        name = "copy"

    def __init__(self, src, dst):
        self.invars, self.outvars, self.params = [src], [dst], {}


def _nbytes(v: Any) -> int:
    return _jaxpr_walk.nbytes(getattr(v, "aval", None))
