"""``mh.cost``: what a function will cost, per module, before it runs.

The function is traced once to a jaxpr with ``mh.config.profiler_names`` on
(so every equation carries the path of the module method that made it);
nothing is compiled or computed. Each equation's FLOPs are counted as XLA
counts them (``_flops.py``) and added to its module; the params each module
owns are read off the params passed in (or, for a transformed function,
``init``'s shapes under ``jax.eval_shape``).
"""

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

import jax

from minihaiku import _cost_plot, _jaxpr_walk, _memory, config, errors
from minihaiku._transform import Transformed, TransformedWithState, transform_with_state
from minihaiku._units import bytes_text, count_text

_OUTSIDE = "(outside modules)"
_MODULE = re.compile(r"[A-Za-z_]\w*_\d+")


@dataclasses.dataclass
class ModuleCost:
    """The cost of one module method (its own operations, not its children's).

    Attributes:
      module: the module's path, e.g. ``~/MLP_0/__call__/Linear_0``.
      method: the method, e.g. ``__call__`` (``""`` for code outside modules).
      runs: how many times its operations run per call of the function: the
        product of the lengths of the scans around it (``layer_stack(n)``: n).
      flops: FLOPs over all runs, counted as XLA's ``cost_analysis`` does.
      transcendentals: transcendental ops (exp, tanh, ...) over all runs.
      param_bytes: bytes of the params the module owns (all layers).
      activation_bytes: bytes of the values its operations compute in the
        forward pass, over all runs, before XLA fuses any of them.
    """

    module: str
    method: str
    runs: int = 1
    flops: int = 0
    transcendentals: int = 0
    param_bytes: int = 0
    activation_bytes: int = 0


@dataclasses.dataclass
class CostReport:
    """What ``mh.cost`` returns: rows per module and totals; ``str()`` is the table.

    Attributes:
      modules: the :class:`ModuleCost` rows, in execution order.
      flops: total FLOPs (every run of every scan counted).
      transcendentals: total transcendental ops.
      param_bytes: total bytes of the params.
      activation_bytes: total forward activation bytes.
      peak_bytes: with ``memory=True``, the predicted peak device memory of
        the compiled function (arguments, outputs and temporaries), else None.
      while_loops: while loops met; their bodies are counted once.
    """

    modules: list
    flops: int
    transcendentals: int
    param_bytes: int
    activation_bytes: int
    peak_bytes: int | None = None
    while_loops: int = 0

    def __str__(self) -> str:
        return _table(self)


def cost(f: Callable[..., Any], *args: Any, memory: bool = False, plot: str | None = None,
         **kwargs: Any) -> CostReport:
    """Per-module FLOPs, param bytes and activation bytes of ``f(*args)``, without running it.

    ``f`` is traced once to a jaxpr (nothing is compiled or computed). Each
    operation is charged to the module method that ran it, with FLOPs
    counted as XLA's ``compiled.cost_analysis()`` counts them: two per
    multiply-add of a dot or convolution, one per element of an elementwise
    op; exp, tanh and the like count as transcendentals, data movement is
    free. Operations inside ``layer_stack``/``scan`` count once per layer
    (``runs``); XLA's own ``cost_analysis`` counts a loop body once, so
    compare with an unrolled model. A ``while_loop`` body counts once.

    With ``memory=True`` the report also predicts the peak device memory of
    the compiled function (e.g. a jitted train step): argument and output
    buffers plus the largest set of intermediate buffers alive at once, where
    only the results of operations XLA does not fuse away (dots,
    convolutions, reductions, loop outputs, and values that leave a loop or
    the function) are buffers; donated arguments are reused for outputs.

    Args:
      f: a ``Transformed``/``TransformedWithState`` (its ``apply`` is costed
        with ``init``'s param shapes; ``args`` are its inputs, as for
        ``mh.summary``), or any function, e.g. a jitted train step, called as
        ``f(*args, **kwargs)``; its params are the flat path dicts in
        ``args``. A plain function that builds modules is transformed first.
      *args: arrays or ``jax.ShapeDtypeStruct``s (and static values).
      memory: also predict the peak device memory.
      plot: a file path: save a bar chart of FLOPs and bytes per module there
        (needs matplotlib).
      **kwargs: keyword inputs of ``f``.

    Returns:
      A :class:`CostReport`; print it for the table.

    Example::

      f = mh.without_apply_rng(mh.transform(lambda x: mh.nn.MLP([64, 10])(x)))
      report = mh.cost(f, jax.ShapeDtypeStruct((32, 128), jnp.float32))
      print(report.flops)  # 569664 — two per multiply-add, one per bias add and relu
    """
    fn, fargs, params = _costed(f, args, kwargs)
    try:
        with config.override(profiler_names=True):
            closed = jax.make_jaxpr(fn)(*fargs)
    except errors.NotInTransformError:
        fn, fargs, params = _transformed(transform_with_state(f), args, kwargs)
        with config.override(profiler_names=True):
            closed = jax.make_jaxpr(fn)(*fargs)
    report = _report(closed.jaxpr, params)
    if memory:
        report.peak_bytes = _memory.peak_bytes(closed, _donated(f, args, kwargs))
    if plot is not None:
        _cost_plot.save(report, plot)
    return report


def _costed(f: Any, args: tuple, kwargs: dict) -> tuple[Callable, tuple, dict]:
    """``(function of arrays, its arguments, flat params)`` to trace."""
    if isinstance(f, (Transformed, TransformedWithState)):
        return _transformed(f, args, kwargs)
    if not callable(f):
        raise errors.InvalidArgumentError(
            f"mh.cost: the first argument must be the function to cost (a function, a "
            f"jitted step, or the result of mh.transform), got {type(f).__name__} {f!r}. "
            "Fix: mh.cost(f, *inputs).")
    params: dict = {}
    for leaf in jax.tree_util.tree_leaves(args, is_leaf=_is_path_dict):
        if _is_path_dict(leaf):
            params.update(leaf)
    # ``jax.jit`` reuses a trace made without profiler names: trace what it wraps.
    inner = getattr(f, "__wrapped__", f) if _is_jitted(f) else f
    # Python values (flags, sizes, maybe static_argnums of a jit) stay Python values.
    static = [not jax.tree_util.tree_leaves(a) or isinstance(a, (bool, int, float, str))
              for a in args]

    def fn(*arrays):
        it = iter(arrays)
        return inner(*(a if s else next(it) for a, s in zip(args, static, strict=True)),
                     **kwargs)

    return fn, tuple(a for a, s in zip(args, static, strict=True) if not s), params


def _transformed(f: Any, args: tuple, kwargs: dict) -> tuple[Callable, tuple, dict]:
    key = jax.random.PRNGKey(0)
    out = jax.eval_shape(lambda *a: f.init(key, *a, **kwargs), *args)
    stateful = isinstance(f, TransformedWithState)
    params, state = out if stateful else (out, {})
    # ``without_apply_rng`` drops the rng: apply's positional parameters say which.
    takes_rng = _positional(f.apply) > (2 if stateful else 1)
    lead = (params, state) if stateful else (params,)

    def fn(lead, *a):
        return f.apply(*lead, *((key,) if takes_rng else ()), *a, **kwargs)

    return fn, (lead, *args), dict(params)


def _positional(fn: Callable) -> int:
    sig = inspect.signature(fn, follow_wrapped=False)
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in sig.parameters.values())


def _is_path_dict(x: Any) -> bool:
    return isinstance(x, dict) and bool(x) and all(
        isinstance(k, str) and k.startswith("~") for k in x)


def _is_jitted(f: Any) -> bool:
    return hasattr(f, "trace") and hasattr(f, "lower") and hasattr(f, "__wrapped__")


def _donated(f: Any, args: tuple, kwargs: dict) -> tuple:
    """Per flattened argument, whether a jitted ``f`` donates it."""
    if not _is_jitted(f):
        return ()
    info = f.trace(*args, **kwargs).args_info
    return tuple(a.donated for a in jax.tree_util.tree_leaves(info[0]))


def _report(jaxpr: Any, params: dict) -> CostReport:
    owners = {_owner(path) for path in params}
    rows: dict = {}
    whiles = []
    for op in _jaxpr_walk.walk(jaxpr, on_while=lambda: whiles.append(1)):
        key = _module_of(op.segments, owners)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ModuleCost(*key)
        row.runs = max(row.runs, op.runs)
        row.flops += op.flops * op.runs
        row.transcendentals += op.transcendentals * op.runs
        if not op.backward:
            row.activation_bytes += op.out_bytes * op.runs
    for path, value in params.items():
        key = _owner(path)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ModuleCost(*key)
        row.param_bytes += int(value.size) * value.dtype.itemsize
    modules = list(rows.values())
    return CostReport(
        modules, sum(r.flops for r in modules), sum(r.transcendentals for r in modules),
        sum(r.param_bytes for r in modules), sum(r.activation_bytes for r in modules),
        while_loops=len(whiles))


def _owner(path: str) -> tuple:
    """``~/MLP_0/__call__/Linear_0/__call__/w`` -> ``(~/MLP_0/__call__/Linear_0, __call__)``."""
    scope = path.rpartition("/")[0]
    owner, _, method = scope.rpartition("/")
    return (owner, method) if owner else (_OUTSIDE, "")


def _module_of(segments: tuple, owners: set) -> tuple:
    """The module method an equation belongs to.

    Segments after the last ``<Module>_<n>/<method>`` pair (JAX's own named
    scopes, such as einsum's) are dropped. A module built outside the module
    that calls it has a name stack longer than its path
    (``Caller_0/__call__/Linear_0/__call__`` for ``~/Linear_0``): the
    shortest known suffix names it.
    """
    pairs = 0
    while (2 * pairs + 1 < len(segments) and _MODULE.fullmatch(segments[2 * pairs])
           and segments[2 * pairs + 1].isidentifier()):
        pairs += 1
    if not pairs:
        return (_OUTSIDE, "")
    used = segments[:2 * pairs]
    for start in range(0, len(used) - 1, 2):
        key = ("/".join(("~",) + used[start:-1]), used[-1])
        if key in owners:
            return key
    return ("/".join(("~",) + used[:-1]), used[-1])


def _table(report: CostReport) -> str:
    columns = ("Module", "Method", "Runs", "FLOPs", "FLOPs/run", "%", "Params", "Activations")
    total = report.flops or 1
    rows = [{"Module": r.module, "Method": r.method, "Runs": str(r.runs),
             "FLOPs": count_text(r.flops), "FLOPs/run": count_text(r.flops // max(r.runs, 1)),
             "%": f"{100 * r.flops / total:.1f}", "Params": bytes_text(r.param_bytes),
             "Activations": bytes_text(r.activation_bytes)} for r in report.modules]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    left = ("Module", "Method")

    def line(cells):
        return "  ".join(cells[c].ljust(widths[c]) if c in left else cells[c].rjust(widths[c])
                         for c in columns).rstrip()

    lines = [line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns})]
    lines += [line(r) for r in rows]
    lines.append(f"Total: {count_text(report.flops)} FLOPs ({report.flops:,}), "
                 f"{count_text(report.transcendentals)} transcendentals, params "
                 f"{bytes_text(report.param_bytes)}, activations "
                 f"{bytes_text(report.activation_bytes)}")
    if report.peak_bytes is not None:
        lines.append(f"Predicted peak device memory: {bytes_text(report.peak_bytes)}")
    if report.while_loops:
        lines.append(f"Note: {report.while_loops} while loop(s): each body counted once.")
    return "\n".join(lines)
