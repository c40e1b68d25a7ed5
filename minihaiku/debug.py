"""``mh.debug``: find the module that first produced a NaN or an infinity.

:func:`check_finite` wraps a network function before it is transformed.
Inside, ``mh.intercept_methods`` and ``mh.custom_getter`` see every module
method's output and every param read; each gets an ``isfinite`` reduction
and a ``jax.debug.callback`` to the host, ordered, so the host sees them in
execution order, eagerly and under ``jax.jit`` alike. The first non-finite
value of a call raises :class:`~minihaiku.errors.NonFiniteError` (or is
printed). Nothing is added to functions that are not wrapped.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku._transform import Transformed, TransformedWithState, running_init
from minihaiku.interceptors import custom_getter, intercept_methods


@dataclasses.dataclass
class Finding:
    """The first non-finite value of a call of a checked function.

    Attributes:
      kind: ``"output"``, ``"param"`` or ``"gradient"``.
      path: the module path (for a param, the param's path).
      method: the module method (``""`` for a param).
      step: which call of the checked function (0 is the first apply call).
      call: the how-manieth run of this path within that call (0-based): inside
        ``layer_stack`` (one call per layer) the layer index.
    """

    kind: str
    path: str
    method: str
    step: int
    call: int

    def __str__(self) -> str:
        what = {"output": "output of", "param": "param", "gradient": "gradient of the output of"}
        where = f"'{self.path}'" + (f" ({self.method})" if self.method else "")
        return (f"step {self.step}: first non-finite (NaN/inf) value in execution order: "
                f"{what[self.kind]} {where}, call {self.call} of it in this step (the layer "
                "index inside a layer_stack)")


class _Host:
    """Host-side bookkeeping, fed by the ordered callbacks."""

    def __init__(self, raise_error: bool):
        self.raise_error = raise_error
        self.step = -1
        self.calls: dict = {}
        self.findings: list = []

    def start(self) -> None:
        self.step += 1
        self.calls = {}

    def seen(self, kind: str, path: str, method: str, finite: Any) -> None:
        key = (kind, path, method)
        call = self.calls.get(key, 0)
        self.calls[key] = call + 1
        if bool(finite) or any(f.step == self.step for f in self.findings):
            return
        finding = Finding(kind, path, method, self.step, call)
        self.findings.append(finding)
        if self.raise_error:
            raise errors.NonFiniteError(
                f"mh.debug.check_finite: {finding}. Fix: look at that module's inputs and "
                "params; jax.debug.print inside it shows the values.")
        print(f"mh.debug.check_finite: {finding}")


def check_finite(f: Callable, grads: bool = False, *, raise_error: bool = True) -> Callable:
    """Wraps a network function so a NaN/inf names the module that made it first.

    Wrap the function before transforming it: ``mh.transform(check_finite(f))``.
    Every module method's output and every param read is checked in
    ``apply`` (``init`` runs unchecked); the first non-finite one of a call
    raises a :class:`~minihaiku.errors.NonFiniteError` naming the module
    path, the method, the step (how many calls of ``apply`` came before) and
    which run of that module within the step it was (inside ``layer_stack``:
    the layer). Works eagerly and under ``jax.jit`` (there the error surfaces
    as the XLA runtime error carrying the same message). The checks are
    ``jnp.isfinite`` reductions and ordered ``jax.debug.callback`` calls:
    they cost a host round trip per module call, so use it to debug.

    Args:
      f: the network function, as given to ``mh.transform``.
      grads: also check, in the backward pass, the gradient reaching each
        module's output (the first one computed is reported).
      raise_error: raise on the first finding (default); False prints it
        and carries on. Findings are kept in ``checked.findings``.

    Returns:
      The checked function; ``.findings`` lists a :class:`Finding` per step
      that had one.

    Example::

      def f(x):
        return jnp.log(mh.nn.Linear(2)(x))
      init, apply = mh.without_apply_rng(mh.transform(mh.debug.check_finite(f)))
      params = init(0, jnp.ones((1, 3)))
      out = apply(params, jnp.ones((1, 3)))   # raises if the Linear gives inf/NaN
    """
    if isinstance(f, (Transformed, TransformedWithState)):
        raise errors.InvalidArgumentError(
            "mh.debug.check_finite wraps the network function before it is transformed "
            "(its checks run inside the transform), got the result of mh.transform. Fix: "
            "mh.transform(mh.debug.check_finite(f)) instead of "
            "mh.debug.check_finite(mh.transform(f)).")
    if not callable(f):
        raise errors.InvalidArgumentError(
            f"mh.debug.check_finite expects the network function, got {type(f).__name__}.")
    host = _Host(raise_error)

    def on_method(method, args, kwargs, ctx):
        out = method(*args, **kwargs)
        if running_init():
            return out
        path, name = ctx.path, ctx.method_name or ""
        _report(host, "output", path, name, out)
        if grads and _differentiable(out):
            out = _watch_gradient(host, path, name, out)
        return out

    def on_param(next_getter, value, ctx):
        value = next_getter(value)
        if not running_init():
            _report(host, "param", ctx.path, "", value)
        return value

    @functools.wraps(f)
    def checked(*args, **kwargs):
        if not running_init():
            jax.debug.callback(host.start, ordered=True)
        with intercept_methods(on_method), custom_getter(on_param):
            return f(*args, **kwargs)

    checked.findings = host.findings  # type: ignore[attr-defined]
    return checked


def _all_finite(tree: Any) -> Any:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _differentiable(tree: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(
        hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact) for x in leaves)


def _report(host: _Host, kind: str, path: str, method: str, tree: Any) -> None:
    jax.debug.callback(functools.partial(host.seen, kind, path, method), _all_finite(tree),
                       ordered=True)


def _watch_gradient(host: _Host, path: str, method: str, out: Any) -> Any:
    @jax.custom_vjp
    def identity(x):
        return x

    def fwd(x):
        return x, None

    def bwd(_, cotangent):
        jax.debug.callback(functools.partial(host.seen, "gradient", path, method),
                           _all_finite(cotangent))
        return (cotangent,)

    identity.defvjp(fwd, bwd)
    return identity(out)
