"""The eager executable cache of the lifted transforms.

Eagerly, JAX compiles ``jax.lax.scan`` (cond, while, checkpoint, vmap) of a
fresh closure again at every call: ~0.1 s, far more than running it. Every
lifted call builds a fresh closure, so :func:`run_transform` traces it to a
jaxpr and reuses the executable compiled for an earlier jaxpr with the same
*key*.

The invariant the cache rests on: **two jaxprs with equal keys compute the
same function of their inputs**. The key is built from the jaxpr's structure,
never from its text:

* every variable by its position (alpha-renamed) and its aval (shape, dtype,
  weak type, sharding);
* every equation's primitive, ``JaxprEqnContext`` (interned by value) and
  params; a param that is a jaxpr is keyed recursively, with the consts of a
  nested closed jaxpr compared by value; arrays (literals included) by dtype,
  shape and bytes; other params by their own ``==`` (JAX keys its own caches
  on them), holding a reference, so identity-compared objects (callbacks)
  stay alive and only match themselves;
* the top-level consts are not in the key: they are passed in as arguments.

Params that only define derivatives (custom_jvp/vjp rules, a checkpoint
policy) are left out: the cached executable is only ever *evaluated* with
concrete arrays, never differentiated or traced by an outer transform (then
we are not eager and the cache is bypassed). A param that can be neither
hashed nor compared by value makes the jaxpr unshareable: it is evaluated
without the cache. So is a jaxpr whose by-value arrays exceed ``_MAX_BYTES``.

The cache is on by default; ``MINIHAIKU_EAGER_CACHE=0`` in the environment
turns it off at import, :func:`eager_cache` in a ``with`` block.
"""

import collections
import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.extend import core as jax_core

from minihaiku import frame as frame_lib

_MAX_ENTRIES = 256
_MAX_BYTES = 1 << 20
_CACHE: collections.OrderedDict = collections.OrderedDict()  # key -> jitted evaluator
_LOCK = threading.Lock()

# (primitive name, param) pairs that only define how to differentiate.
_DERIVATIVE_ONLY = {
    ("custom_jvp_call", "jvp_jaxpr_fun"), ("custom_jvp_call", "jvp_jaxpr_thunk"),
    ("custom_vjp_call", "fwd_jaxpr_thunk"), ("custom_vjp_call", "bwd"),
    ("custom_vjp_call", "out_trees"), ("checkpoint", "policy"),
}


class _Settings(threading.local):
    def __init__(self):
        self.enabled = os.environ.get("MINIHAIKU_EAGER_CACHE", "1") != "0"


_SETTINGS = _Settings()


@contextlib.contextmanager
def eager_cache(enabled: bool) -> Iterator[None]:
    """Turns the eager executable cache of ``mh.lifted`` on or off in a block.

    Off, every eager lifted call compiles its JAX transform afresh (as plain
    JAX would): same results, ~100x slower eager ``scan``/``fori_loop``.
    Applies to the calling thread; ``MINIHAIKU_EAGER_CACHE=0`` sets the
    default for all threads.

    Example::

      f = mh.transform(lambda x: mh.lifted.fori_loop(0, 3, lambda i, v: v * 2, x))
      with mh.lifted.eager_cache(False):    # compiled afresh at every eager call
        out = f.apply({}, None, jnp.ones(2))
    """
    was = _SETTINGS.enabled
    _SETTINGS.enabled = bool(enabled)
    try:
        yield
    finally:
        _SETTINGS.enabled = was


def clear() -> None:
    """Drops every cached executable."""
    with _LOCK:
        _CACHE.clear()


def run_transform(fn: Callable, *args: Any) -> Any:
    """Returns ``fn(*args)``, where ``fn`` applies one JAX transform to a fresh closure.

    Under an outer JAX transform (e.g. ``jax.jit(apply)``) or with the cache
    off this is just ``fn(*args)``; eagerly, see the module docstring.
    """
    if not _SETTINGS.enabled or jax.config.jax_disable_jit or not frame_lib.is_eager():  # type: ignore[attr-defined]  # jax.config's flags are dynamic attributes, not in its stubs
        return fn(*args)
    # Only arrays become inputs: Python values (a flag for an unmapped vmap
    # argument, say) must reach the function as they are, as without us.
    leaves, treedef = jax.tree_util.tree_flatten(args)
    where = [i for i, leaf in enumerate(leaves) if isinstance(leaf, (jax.Array, np.ndarray))]

    def traced(*arrays):
        full = list(leaves)
        for i, array in zip(where, arrays, strict=True):
            full[i] = array
        return fn(*jax.tree_util.tree_unflatten(treedef, full))

    flat_args = [leaves[i] for i in where]
    closed, out_shape = jax.make_jaxpr(traced, return_shape=True)(*flat_args)
    key = computation_key(closed.jaxpr)
    if key is None:
        flat_out = jax_core.jaxpr_as_fun(closed)(*flat_args)
    else:
        with _LOCK:
            run = _CACHE.pop(key, None) or jax.jit(functools.partial(_evaluate, closed.jaxpr))
            _CACHE[key] = run
            if len(_CACHE) > _MAX_ENTRIES:
                _CACHE.popitem(last=False)
        flat_out = run(closed.consts, flat_args)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), flat_out)


def _evaluate(jaxpr, consts, flat_args):
    return jax_core.jaxpr_as_fun(jax_core.ClosedJaxpr(jaxpr, consts))(*flat_args)


class _Unshareable(Exception):
    """A part of the jaxpr that cannot be keyed safely."""


def computation_key(jaxpr: Any) -> Any:
    """A hashable key equal for jaxprs computing the same function, or ``None``."""
    budget = [_MAX_BYTES]
    try:
        return _jaxpr_key(jaxpr, budget)
    except _Unshareable:
        return None


def _jaxpr_key(jaxpr: Any, budget: list[int]) -> tuple:
    names: dict = {}

    def bind(v):
        names[v] = len(names)
        return v.aval

    def use(v):
        if isinstance(v, jax_core.Literal):
            return ("literal", v.aval, _value_key(v.val, budget))
        return names[v]

    constvars = tuple(bind(v) for v in jaxpr.constvars)
    invars = tuple(bind(v) for v in jaxpr.invars)
    eqns = []
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        params = tuple(sorted(
            (k, _param_key(p, budget)) for k, p in eqn.params.items()
            if (name, k) not in _DERIVATIVE_ONLY))
        ins = tuple(use(v) for v in eqn.invars)
        outs = tuple(("drop", v.aval) if isinstance(v, jax_core.DropVar) else bind(v)
                     for v in eqn.outvars)
        eqns.append((eqn.primitive, eqn.ctx, params, ins, outs))
    outvars = tuple(use(v) for v in jaxpr.outvars)
    return ("jaxpr", constvars, invars, tuple(eqns), outvars, frozenset(jaxpr.effects))


def _param_key(p: Any, budget: list[int]) -> Any:
    if isinstance(p, jax_core.ClosedJaxpr):
        return ("closed", _jaxpr_key(p.jaxpr, budget),
                tuple(_value_key(c, budget) for c in p.consts))
    if isinstance(p, jax_core.Jaxpr):
        return _jaxpr_key(p, budget)
    if isinstance(p, (tuple, list)):
        return (type(p).__name__,) + tuple(_param_key(q, budget) for q in p)
    if isinstance(p, (jax.Array, np.ndarray, np.generic)):
        return _value_key(p, budget)
    try:
        hash(p)
    except TypeError:
        raise _Unshareable() from None
    # The type too, so that 1 == 1.0 == True do not match each other.
    return (type(p), p)


def _value_key(value: Any, budget: list[int]) -> tuple:
    try:
        array = np.asarray(value)
    except Exception:  # e.g. a typed PRNG key: not comparable by bytes
        raise _Unshareable() from None
    if array.dtype == object:
        raise _Unshareable()
    budget[0] -= array.nbytes
    if budget[0] < 0:
        raise _Unshareable()
    return ("value", array.dtype, array.shape, array.tobytes())

