"""The hooks ``get_param``, ``get_state``, ``set_state`` and module methods call.

Each hook in those files is one truthiness check of a module-level int:
``PARAMS`` (a param/state interceptor or policy exists somewhere) and
``METHODS`` (anything that needs to see module method calls: method
interceptors, policies, profiler names, or param interceptors, which need to
know the running module). Only when one is set do they call in here, where
the functions registered by :mod:`minihaiku.interceptors` (per thread) and
:mod:`minihaiku.precision` (global, outermost) run as a chain, innermost
registered first, the last ``next_*`` doing the real work.
"""

import functools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.extend import core as jax_core

from minihaiku import errors
from minihaiku import frame as frame_lib

PARAMS = 0
METHODS = 0


class Context(NamedTuple):
    """What an interceptor is called about.

    Attributes:
      path: the full path of the param or state entry (``~/Linear_0/__call__/w``),
        or, for a method, the module's path (``~/Linear_0``).
      name: the param or state name, or the method name.
      module: the module whose method is running (``None`` at top level).
      method_name: the name of that method (``None`` at top level).
    """
    path: str
    name: str
    module: Any
    method_name: str | None


_KINDS = ("param_creators", "state_creators", "param_getters", "state_getters",
          "setters", "methods")


class _Local(threading.local):
    def __init__(self):
        for kind in _KINDS:
            setattr(self, kind, [])
        # (module, method name) of each running module method.
        self.calls: list[tuple] = []
        self.bypass = False


LOCAL = _Local()
# Registered for every thread, outermost (precision policies).
GLOBAL: dict[str, list] = {kind: [] for kind in _KINDS}
LOCK = threading.Lock()
COUNTS = {"params": 0, "methods": 0}
_NAMES = False


def refresh() -> None:
    global PARAMS, METHODS
    params = COUNTS["params"] or any(GLOBAL[k] for k in _KINDS[:5])
    PARAMS = int(bool(params))
    METHODS = int(bool(params or COUNTS["methods"] or GLOBAL["methods"] or _NAMES))


def set_profiler_names(on: bool) -> None:
    """Turns the ``jax.named_scope`` of every module method on or off."""
    global _NAMES
    with LOCK:
        _NAMES = bool(on)
        refresh()


def register_global(kind: str, fn: Callable) -> None:
    """Registers ``fn`` outermost in every thread (used by precision policies)."""
    with LOCK:
        if fn not in GLOBAL[kind]:
            GLOBAL[kind].append(fn)
        refresh()


def unregister_global(kind: str, fn: Callable) -> None:
    with LOCK:
        if fn in GLOBAL[kind]:
            GLOBAL[kind].remove(fn)
        refresh()


def _chain(local_fns: list, kind: str) -> list:
    # Innermost registered first, then the thread's outer ones, then the global ones.
    glob = GLOBAL[kind]
    if not glob:
        return local_fns[::-1]
    return local_fns[::-1] + glob


def _run(fns: list, ctx: Context, last: Callable) -> Callable:
    """``fns[0]``'s entry point; each ``fn`` gets the next one as its ``next``."""
    nxt = last
    for fn in reversed(fns):
        nxt = functools.partial(_step, fn, nxt, ctx)
    return nxt


def _step(fn, nxt, ctx, *args):
    return fn(nxt, *args, ctx)


def _base(base: Callable, *args: Any) -> Any:
    """Runs the un-intercepted ``base(*args)``: the hooks let it through."""
    local = LOCAL
    old, local.bypass = local.bypass, True
    try:
        return base(*args)
    finally:
        local.bypass = old


def _context(path: str, name: str) -> Context:
    calls = LOCAL.calls
    if calls:
        module, method_name = calls[-1][:2]
        return Context(path, name, module, method_name)
    return Context(path, name, None, None)


def _checked(value: Any, what: str, path: str) -> Any:
    # Only what is stored is checked; a getter may return any value it likes.
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise errors.InterceptorError(
            f"A custom {what} for '{path}' returned {type(value).__name__}, not an "
            "array, so there is nothing to store. Fix: return an array, e.g. the "
            "result of next_creator(shape, dtype, init).")
    return value


def get_param(base: Callable, name: str, shape: Any, dtype: Any, init: Any) -> jax.Array:
    """``get_param`` with the creators and getters of this thread (and policies)."""
    frame = frame_lib.current_frame("mh.get_param")
    path = f"{frame.scope}/{name}"
    ctx = _context(path, name)
    creators = _chain(LOCAL.param_creators, "param_creators")
    stored = frame.params.get(path)
    if stored is None and frame.is_init and creators:
        frame_lib.check_trace(frame, "mh.get_param", path)

        def create(shape, dtype, init):
            return _base(base, name, shape, dtype, init)

        value = _checked(_run(creators, ctx, create)(tuple(shape), dtype, init),
                         "creator", path)
        frame.params[path] = value  # what the creators return is what is stored
    else:
        # A creator may have stored another dtype than the one asked (a
        # precision policy does): then only the shape is checked.
        if stored is not None and creators:
            dtype = stored.dtype
        value = _base(base, name, shape, dtype, init)
    getters = _chain(LOCAL.param_getters, "param_getters")
    if getters:
        value = _run(getters, ctx, _identity)(value)
    return value


def get_state(base: Callable, name: str, shape: Any, dtype: Any, init: Any) -> jax.Array:
    """``get_state`` with the state creators and getters of this thread."""
    frame = frame_lib.current_frame("mh.get_state")
    path = f"{frame.scope}/{name}"
    ctx = _context(path, name)
    creators = _chain(LOCAL.state_creators, "state_creators")
    stored = frame.state.get(path)
    if (stored is None and frame.is_init and creators and init is not None
            and shape is not None):
        def create(shape, dtype, init):
            return _base(base, name, shape, dtype, init)

        value = _checked(_run(creators, ctx, create)(tuple(shape), dtype, init),
                         "creator", path)
        frame.state[path] = frame.initial_state[path] = value
    else:
        if stored is not None and creators:
            dtype = stored.dtype
        value = _base(base, name, shape, dtype, init)
    getters = _chain(LOCAL.state_getters, "state_getters")
    if getters:
        value = _run(getters, ctx, _identity)(value)
    return value


def set_state(base: Callable, name: str, value: Any) -> None:
    """``set_state`` with the setters of this thread."""
    frame = frame_lib.current_frame("mh.set_state")
    setters = _chain(LOCAL.setters, "setters")
    if not setters:
        return _base(base, name, value)

    def write(value):
        return _base(base, name, value)

    path = f"{frame.scope}/{name}"
    _run(setters, _context(path, name), write)(value)


def _identity(value):
    return value


def call_method(f: Callable, module: Any, method_name: str, args: tuple,
                kwargs: dict) -> Any:
    """Runs the module method ``f`` with the interceptors, policies and names on.

    Called by the module-method wrapper inside the method's scope.
    """
    calls = LOCAL.calls
    name = _relative(module, method_name, calls) if _NAMES and not _eager() else None
    calls.append((module, method_name))
    try:
        fns = _chain(LOCAL.methods, "methods")
        if fns:
            ctx = Context(module._mh_path, method_name, module, method_name)
            run = _run_method(fns, ctx, functools.partial(f, module))
            if name is None:
                return run(*args, **kwargs)
            with jax.named_scope(name):
                return run(*args, **kwargs)
        if name is None:
            return f(module, *args, **kwargs)
        with jax.named_scope(name):
            return f(module, *args, **kwargs)
    finally:
        calls.pop()


def _run_method(fns: list, ctx: Context, last: Callable) -> Callable:
    nxt = last
    for fn in reversed(fns):
        nxt = functools.partial(_method_step, fn, nxt, ctx)
    return nxt


def _method_step(fn, nxt, ctx, *args, **kwargs):
    return fn(nxt, args, kwargs, ctx)


def _relative(module: Any, method_name: str, calls: list) -> str:
    """The named scope of a method: its path below the enclosing method's.

    JAX nests named scopes, so the enclosing method's part is already on the
    name stack; a module built elsewhere (not below its caller) gets its
    full path.
    """
    scope = f"{module._mh_path}/{method_name}"
    if calls:
        outer_module, outer_method = calls[-1]
        outer = f"{outer_module._mh_path}/{outer_method}/"
        if scope.startswith(outer):
            return scope[len(outer):]
    return scope[2:] if scope.startswith("~/") else scope


def _eager() -> bool:
    """Whether nothing is tracing: names would be attached to nothing then."""
    return type(jax_core.find_top_trace(())).__name__ == "EvalTrace"
