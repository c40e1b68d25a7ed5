"""``Module``: object-oriented code whose params get unique paths.

An instance is named ``{name or ClassName}_{n}`` when it is built, in the
scope of the module method running at that moment (``~`` at top level); ``n``
counts instances of that name within one call of that method. While one of
its methods runs, the scope is ``<where it was built>/<module name>/<method>``.
"""

import functools
import inspect
from typing import Callable, Optional, TypeVar

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import _hooks
from minihaiku import params as params_lib

F = TypeVar("F", bound=Callable)


def module_method(f: F) -> F:
    """Makes ``f`` a module method: while it runs, params go under its scope.

    ``Module`` subclasses wrap ``__call__`` and public methods automatically;
    the decorator is for private methods, or for code written for the
    tutorial. Wrapping twice is a no-op.

    Example::

      class Linear(mh.Module):
        @mh.module_method
        def __call__(self, x):
          return x @ mh.get_param("w", (x.shape[-1], 3))
    """
    if getattr(f, "_mh_wrapped", False):
        return f
    method_name = f.__name__
    caller = f"Module method {f.__qualname__}"

    @functools.wraps(f)
    def wrapped(self, *args, **kwargs):
        frame = frame_lib.current_frame(caller)
        try:
            scope = f"{self._mh_path}/{method_name}"
        except AttributeError:
            raise _no_init_error(self) from None
        outer_scope, outer_counters = frame.scope, frame.counters
        if scope == outer_scope:
            # Re-entering the same method (super().__call__, recursion) keeps
            # counting, so submodules built on both levels stay distinct.
            return f(self, *args, **kwargs)
        frame.scope, frame.counters = scope, {}
        try:
            if _hooks.METHODS:
                return _hooks.call_method(f, self, method_name, args, kwargs)
            return f(self, *args, **kwargs)
        finally:
            frame.scope, frame.counters = outer_scope, outer_counters

    wrapped._mh_wrapped = True
    return wrapped


def _no_init_error(module) -> errors.MiniHaikuError:
    cls = type(module).__name__
    return errors.MiniHaikuError(
        f"{cls} was not initialised as a module: {cls}.__init__ must call "
        "super().__init__(name=...) before its methods are used.")


class Module:
    """Base class of minihaiku modules.

    ``__call__`` and every public method are module methods automatically.

    Example::

      class Scale(mh.Module):
        def __call__(self, x):
          return x * mh.get_param("s", (), init=jax.nn.initializers.ones)

      f = mh.transform(lambda x: Scale()(x))   # param '~/Scale_0/__call__/s'
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attr, value in list(vars(cls).items()):
            if ((attr == "__call__" or not attr.startswith("_"))
                    and inspect.isfunction(value)):
                setattr(cls, attr, module_method(value))

    def __init__(self, name: Optional[str] = None):
        frame = frame_lib.current_frame("Building a mh.Module")
        if name is None:
            base = type(self).__name__
        else:  # A class name is always valid; a given one is checked.
            params_lib.check_name("Module", name, f"of {type(self).__name__}")
            base = name
        counters = frame.counters
        n = counters.get(base, 0)
        counters[base] = n + 1
        self.module_name = f"{base}_{n}"
        self._mh_path = f"{frame.scope}/{self.module_name}"

    @property
    def module_path(self) -> str:
        """Where this module lives, e.g. ``~/MLP_0/__call__/Linear_1``."""
        return self._mh_path

    def __repr__(self) -> str:
        path = getattr(self, "_mh_path", "<not initialised>")
        return f"{type(self).__name__}({path})"
