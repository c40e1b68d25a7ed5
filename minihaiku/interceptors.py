"""Interceptors: user code wrapped around param/state creation, reads, writes and methods.

Four context managers push a function on a thread-local stack for the length
of a ``with`` block; ``get_param``, ``get_state``, ``set_state`` and module
methods run every function on the matching stack.
The innermost registered function runs first and receives ``next_*``, which
runs the next one out; the outermost one's ``next_*`` does the real work.
Precision policies (:mod:`minihaiku.precision`) register as the outermost
layer, so there is one mechanism. Unused, they cost one flag check per hook.
"""

import contextlib
from collections.abc import Callable, Iterator

from minihaiku import _hooks, errors
from minihaiku import frame as frame_lib
from minihaiku._hooks import Context  # noqa: F401  (the type of ctx)


@contextlib.contextmanager
def _pushed(caller: str, fn: Callable, kinds: tuple, counter: str) -> Iterator[None]:
    if not callable(fn):
        raise errors.InterceptorError(
            f"{caller} expects a function, got {type(fn).__name__}: {fn!r}. Fix: "
            "pass the interceptor function itself, e.g. mh.custom_getter(my_getter).")
    frame_lib.current_frame(caller)
    if not kinds:
        raise errors.InvalidArgumentError(
            f"{caller}(params=False, state=False) would intercept nothing. Fix: "
            "set params=True and/or state=True.")
    stacks = [getattr(_hooks.LOCAL, kind) for kind in kinds]
    with _hooks.LOCK:
        for stack in stacks:
            stack.append(fn)
        _hooks.COUNTS[counter] += 1
        _hooks.refresh()
    try:
        yield
    finally:
        with _hooks.LOCK:
            for stack in stacks:
                # `with` blocks nest, so ours is the last entry of each stack.
                stack.pop()
            _hooks.COUNTS[counter] -= 1
            _hooks.refresh()


def _kinds(what: str, params: bool, state: bool) -> tuple:
    return tuple(k for k, on in ((f"param_{what}", params), (f"state_{what}", state)) if on)


def custom_creator(fn: Callable, *, params: bool = True,
                   state: bool = False) -> contextlib.AbstractContextManager:
    """Wraps the creation of params (and/or state) in ``fn``.

    ``fn(next_creator, shape, dtype, init, ctx)`` returns the value to store;
    ``next_creator(shape, dtype, init)`` runs the next creator out, and
    finally the real creation (``init(key, shape, dtype)`` for params,
    ``init(shape, dtype)`` for state). Runs in init only, when a value is
    created. Usable inside a transformed function.

    Example::

      def zeros(next_creator, shape, dtype, init, ctx):
        return next_creator(shape, dtype, jax.nn.initializers.zeros)

      def f(x):
        with mh.custom_creator(zeros):
          return mh.nn.Linear(3)(x)      # w created as zeros
    """
    return _pushed("mh.custom_creator", fn, _kinds("creators", params, state), "params")


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
    """
    return _pushed("mh.custom_getter", fn, _kinds("getters", params, state), "params")


def custom_setter(fn: Callable) -> contextlib.AbstractContextManager:
    """Wraps every ``mh.set_state`` in ``fn(next_setter, value, ctx)``.

    ``next_setter(value)`` runs the next setter out, finally the real write.

    Example::

      def clip(next_setter, value, ctx):
        return next_setter(jnp.clip(value, -1, 1))

      def f():
        with mh.custom_setter(clip):
          mh.set_state("s", jnp.float32(5.0))   # stored as 1.0
    """
    return _pushed("mh.custom_setter", fn, ("setters",), "params")


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
    """
    return _pushed("mh.intercept_methods", fn, ("methods",), "methods")
