"""Interceptors: code wrapped around param/state creation, reads, writes and methods.

Every ``get_param``, ``get_state``, ``set_state`` and module method goes
through one pipeline (``params.py``, ``state.py``, ``module.py``)::

  resolve the path -> look it up -> [missing, init] the creator chain, ending
  in the real creation; its result checked -> stored (+ logical axes)
  -> the getter chain -> the value

and ``set_state``: the setter chain, ending in the checked write. The chains
live on the frame as one :class:`Hooks` record (``frame.hooks``). With
nothing registered it is ``None`` and every access takes the plain fast path.

Two kinds of entries fill a frame's ``Hooks``:

* user interceptors (``custom_creator``, ``custom_getter``, ``custom_setter``,
  ``intercept_methods``), pushed on the frame for the length of a ``with``
  block. Frames that ``mh.lifted`` transforms push inside it inherit them; a
  nested transform's own ``init``/``apply`` starts without them (as in Haiku).
* feature entries registered for every run with :func:`register` (precision
  policies), outermost; a run takes a snapshot of them when it starts.

In each chain the innermost registered function runs first and gets the
next one out as ``next_*``; the last ``next_*`` does the real work.
"""

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax

from minihaiku import errors
from minihaiku import frame as frame_lib


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
          "setters", "methods", "param_dtypes")


class Hooks:
    """The interceptors in force in a frame: one tuple per kind, innermost first.

    ``calls`` is the stack of running ``(module, method_name)``, shared by
    every ``Hooks`` of a run (it tells interceptors which module runs).
    ``names``: wrap traced module methods in ``jax.named_scope``.
    Immutable but for ``calls``: a ``with`` block installs a new record and
    puts the old one back.
    """

    __slots__ = (*_KINDS, "names", "calls")

    def __init__(self, calls: list, names: bool, **chains: tuple):
        self.param_creators: tuple = chains.get("param_creators", ())
        self.state_creators: tuple = chains.get("state_creators", ())
        self.param_getters: tuple = chains.get("param_getters", ())
        self.state_getters: tuple = chains.get("state_getters", ())
        self.setters: tuple = chains.get("setters", ())
        self.methods: tuple = chains.get("methods", ())
        self.param_dtypes: tuple = chains.get("param_dtypes", ())
        self.names = names
        self.calls = calls

    def adding(self, kinds: tuple, fn: Callable) -> "Hooks":
        """A copy with ``fn`` innermost in each of ``kinds``."""
        chains = {k: ((fn,) + getattr(self, k) if k in kinds else getattr(self, k))
                  for k in _KINDS}
        return Hooks(self.calls, self.names, **chains)

    def named(self) -> "Hooks":
        """A copy that also names traced module methods."""
        return Hooks(self.calls, True, **{k: getattr(self, k) for k in _KINDS})

    def context(self, path: str, name: str) -> Context:
        calls = self.calls
        if calls:
            module, method_name = calls[-1]
            return Context(path, name, module, method_name)
        return Context(path, name, None, None)


# Feature entries (precision policies), for every thread; outermost.
_GLOBAL: dict[str, tuple] = {kind: () for kind in _KINDS}
_LOCK = threading.Lock()
_NAMES = [True]  # profiler names (mh.config), one mutable cell


def register(kind: str, fn: Callable) -> None:
    """Adds a feature's ``fn`` to the ``kind`` chain of every run started from now on.

    Features (``mh.precision``) plug into the core this way; users use the
    context managers below. ``kind`` is one of ``param_creators``,
    ``state_creators``, ``param_getters``, ``state_getters``, ``setters``,
    ``methods`` or ``param_dtypes`` (``fn(dtype, ctx) -> dtype``: the dtype a
    param is stored in, consulted in init and apply so the stored value is
    checked against it).
    """
    with _LOCK:
        if fn not in _GLOBAL[kind]:
            _GLOBAL[kind] = _GLOBAL[kind] + (fn,)


def unregister(kind: str, fn: Callable) -> None:
    """Removes a feature's ``fn`` registered with :func:`register`."""
    with _LOCK:
        _GLOBAL[kind] = tuple(f for f in _GLOBAL[kind] if f is not fn)


def set_profiler_names(on: bool) -> None:
    """Turns the ``jax.named_scope`` of every traced module method on or off."""
    _NAMES[0] = bool(on)


def for_frame(parent: Hooks | None) -> Hooks | None:
    """The hooks of a new frame: its parent's (lifted frames), else a new run's.

    Profiler names are switched on here, once per frame, only where the frame
    is traced: eager calls would attach them to nothing, so eager code keeps
    the fast path.
    """
    if parent is not None:
        if parent.names or not _NAMES[0] or frame_lib.is_eager():
            return parent
        return parent.named()
    names = _NAMES[0] and not frame_lib.is_eager()
    glob = _GLOBAL
    if not names and not any(glob.values()):
        return None
    return Hooks([], names, **glob)


def running_methods() -> list:
    """The ``(module, method_name)`` of each running module method, outermost first.

    Tracked while any interceptor is in force (for ``ctx.module``); a
    feature (precision) reads it to find the enclosing modules' settings.
    """
    hooks = frame_lib.current_frame("running_methods").hooks
    return [] if hooks is None else hooks.calls


def chain(fns: tuple, ctx: Context, last: Callable) -> Callable:
    """``fns[0]``'s entry point; each ``fn`` gets the next one out as its ``next``."""
    nxt = last
    for fn in reversed(fns):
        nxt = functools.partial(_step, fn, nxt, ctx)
    return nxt


def _step(fn, nxt, ctx, *args):
    return fn(nxt, *args, ctx)


def _identity(value):
    return value


def get(fns: tuple, value: Any, ctx: Context) -> Any:
    """Runs the getter chain ``fns`` on ``value``."""
    if len(fns) == 1:
        return fns[0](_identity, value, ctx)
    return chain(fns, ctx, _identity)(value)


def call_method(hooks: Hooks, f: Callable, module: Any, method_name: str, args: tuple,
                kwargs: dict) -> Any:
    """Runs the module method ``f`` with the method interceptors and names on.

    Called by the module-method wrapper inside the method's scope.
    """
    calls = hooks.calls
    name = _relative(module, method_name, calls) if hooks.names else None
    calls.append((module, method_name))
    try:
        run: Callable = functools.partial(f, module)
        fns = hooks.methods
        if fns:
            ctx = Context(module.module_path, method_name, module, method_name)
            for fn in reversed(fns):
                run = functools.partial(_method_step, fn, run, ctx)
        if name is None:
            return run(*args, **kwargs)
        with jax.named_scope(name):
            return run(*args, **kwargs)
    finally:
        calls.pop()


def _method_step(fn, nxt, ctx, *args, **kwargs):
    return fn(nxt, args, kwargs, ctx)


def _relative(module: Any, method_name: str, calls: list) -> str:
    """The named scope of a method: its path below the enclosing method's.

    JAX nests named scopes, so the enclosing method's part is already on the
    name stack; a module built elsewhere (not below its caller) gets its
    full path.
    """
    scope = f"{module.module_path}/{method_name}"
    if calls:
        outer_module, outer_method = calls[-1]
        outer = f"{outer_module.module_path}/{outer_method}/"
        if scope.startswith(outer):
            return scope[len(outer):]
    return scope[2:] if scope.startswith("~/") else scope


@contextlib.contextmanager
def _pushed(caller: str, fn: Callable, kinds: tuple) -> Iterator[None]:
    if not callable(fn):
        raise errors.InterceptorError(
            f"{caller} expects a function, got {type(fn).__name__}: {fn!r}. Fix: "
            "pass the interceptor function itself, e.g. mh.custom_getter(my_getter).")
    frame = frame_lib.current_frame(caller)
    if not kinds:
        raise errors.InvalidArgumentError(
            f"{caller}(params=False, state=False) would intercept nothing. Fix: "
            "set params=True and/or state=True.")
    old = frame.hooks
    frame.hooks = (old or Hooks([], False)).adding(kinds, fn)
    try:
        yield
    finally:
        frame.hooks = old


def _kinds(what: str, params: bool, state: bool) -> tuple:
    return tuple(k for k, on in ((f"param_{what}", params), (f"state_{what}", state)) if on)


def custom_creator(fn: Callable, *, params: bool = True,
                   state: bool = False) -> contextlib.AbstractContextManager:
    """Wraps the creation of params (and/or state) in ``fn``.

    ``fn(next_creator, shape, dtype, init, ctx)`` returns the value to store;
    ``next_creator(shape, dtype, init)`` runs the next creator out, and
    finally the real creation (``init(key, shape, dtype)`` for params,
    ``init(shape, dtype)`` for state). Runs in init only, when a value is
    created. What it returns is checked like any creation: the shape and
    dtype asked, else an ``InterceptorError`` naming the path. Usable inside
    a transformed function; holds in the ``mh.lifted`` transforms inside
    the block.

    Example::

      def zeros(next_creator, shape, dtype, init, ctx):
        return next_creator(shape, dtype, jax.nn.initializers.zeros)

      def f(x):
        with mh.custom_creator(zeros):
          return mh.nn.Linear(3)(x)      # w created as zeros

      params = mh.transform(f).init(0, jnp.ones((1, 2)))
    """
    return _pushed("mh.custom_creator", fn, _kinds("creators", params, state))


def custom_getter(fn: Callable, *, params: bool = True,
                  state: bool = False) -> contextlib.AbstractContextManager:
    """Wraps every read of a param (and/or state entry) in ``fn``.

    ``fn(next_getter, value, ctx)`` returns the value the caller gets;
    ``next_getter(value)`` runs the next getter out. Runs in init and apply.

    Example::

      def frozen(next_getter, value, ctx):
        return next_getter(jax.lax.stop_gradient(value))

      def f(x):
        with mh.custom_getter(frozen):
          return mh.nn.Linear(3)(x)

      params = mh.transform(f).init(0, jnp.ones((1, 2)))
    """
    return _pushed("mh.custom_getter", fn, _kinds("getters", params, state))


def custom_setter(fn: Callable) -> contextlib.AbstractContextManager:
    """Wraps every ``mh.set_state`` in ``fn(next_setter, value, ctx)``.

    ``next_setter(value)`` runs the next setter out, finally the real write.

    Example::

      def clip(next_setter, value, ctx):
        return next_setter(jnp.clip(value, -1, 1))

      def f():
        with mh.custom_setter(clip):
          mh.set_state("s", jnp.float32(5.0))   # stored as 1.0

      params, state = mh.transform_with_state(f).init(None)
    """
    return _pushed("mh.custom_setter", fn, ("setters",))


def intercept_methods(fn: Callable) -> contextlib.AbstractContextManager:
    """Wraps every module method call in ``fn(method, args, kwargs, ctx)``.

    ``method(*args, **kwargs)`` runs the next interceptor out, finally the
    real method. ``fn`` itself already runs in the method's scope.

    Example::

      def log(method, args, kwargs, ctx):
        print(ctx.path, ctx.method_name)
        return method(*args, **kwargs)

      def f(x):
        with mh.intercept_methods(log):
          return mh.nn.MLP([4, 2])(x)

      params = mh.transform(f).init(0, jnp.ones((1, 2)))
    """
    return _pushed("mh.intercept_methods", fn, ("methods",))
