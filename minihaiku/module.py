"""``Module``: object-oriented code whose params get unique paths.

An instance is named ``{name or ClassName}_{n}`` when it is built, in the
scope of the module method running at that moment (``~`` at top level); ``n``
counts instances of that name within one call of that method. While one of
its methods runs, the scope is ``<where it was built>/<module name>/<method>``;
while its ``__init__`` runs, ``<where it was built>/<module name>/__init__``.
A module belongs to the run of ``init``/``apply`` that built it. State
entries belong to the module: while any of its methods runs, ``get_state``
and ``set_state`` use ``<where it was built>/<module name>/<name>``.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from minihaiku import checks, errors
from minihaiku import frame as frame_lib
from minihaiku import interceptors as hooks_lib

F = TypeVar("F", bound=Callable)


def module_method(f: F) -> F:
    """Makes ``f`` a module method: while it runs, params go under its scope.

    ``Module`` subclasses wrap ``__call__``, public methods and public
    properties automatically; the decorator is for private methods, or for
    code written for the tutorial. Wrapping twice is a no-op. A generator
    method keeps its scope each time it resumes.

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
    if inspect.isgeneratorfunction(f):
        return _tag(_generator_method(f, method_name, caller), "_mh_wrapped")

    @functools.wraps(f)
    def wrapped(self, *args, **kwargs):
        frame = frame_lib.current_frame(caller)
        try:
            path, run_id = self._mh_path, self._mh_run_id
        except AttributeError:
            raise _no_init_error(self) from None
        if run_id is not frame.run_id:
            raise _reuse_error(self, method_name)
        scope = f"{path}/{method_name}"
        outer_scope, outer_counters, outer_owner = frame.scope, frame.counters, frame.owner
        if scope == outer_scope:
            # Re-entering the same method (super().__call__, recursion) keeps
            # counting, so submodules built on both levels stay distinct.
            return f(self, *args, **kwargs)
        frame.scope, frame.counters, frame.owner = scope, {}, path
        try:
            hooks = frame.hooks
            if hooks is not None:
                return hooks_lib.call_method(hooks, f, self, method_name, args, kwargs)
            return f(self, *args, **kwargs)
        finally:
            frame.scope, frame.counters, frame.owner = outer_scope, outer_counters, outer_owner

    return _tag(wrapped, "_mh_wrapped")


def _tag(fn: Callable, flag: str) -> Any:
    """Sets ``fn.<flag> = True``, so a wrapper is recognised (and never wrapped twice)."""
    setattr(fn, flag, True)
    return fn


def _method_scope(module: Any, frame: Any, method_name: str) -> str:
    try:
        path, run_id = module._mh_path, module._mh_run_id
    except AttributeError:
        raise _no_init_error(module) from None
    if run_id is not frame.run_id:
        raise _reuse_error(module, method_name)
    return f"{path}/{method_name}"


def _generator_method(f: Callable, method_name: str, caller: str) -> Callable:
    """Wraps a generator method so its body runs in its scope at every resume.

    Calling a generator runs none of its body, so the plain wrapper would
    restore the scope before the first ``get_param``. Submodules built across
    resumes are counted in one ``counters`` dict: one call, one count.
    """

    @functools.wraps(f)
    def wrapped(self, *args, **kwargs):
        frame = frame_lib.current_frame(caller)
        scope = _method_scope(self, frame, method_name)
        counters: dict = {}
        gen = f(self, *args, **kwargs)
        sent, thrown = None, None
        while True:
            frame = frame_lib.current_frame(caller)
            outer = frame.scope, frame.counters, frame.owner
            if scope != outer[0]:
                frame.scope, frame.counters, frame.owner = scope, counters, self._mh_path
            try:
                value = gen.send(sent) if thrown is None else gen.throw(thrown)
            except StopIteration as stop:
                return stop.value
            finally:
                frame.scope, frame.counters, frame.owner = outer
            sent, thrown = None, None
            try:
                sent = yield value
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as e:  # Delivered into f at its yield.
                thrown = e

    return wrapped


def _property_method(fget: Callable, name: str) -> Callable:
    """A property getter scoped like a method named after the property.

    Outside a transform it just runs (a property reading configuration must
    still work there; one that calls ``get_param`` fails in ``get_param``).
    """
    method = module_method(_renamed(fget, name))

    @functools.wraps(fget)
    def getter(self):
        if not frame_lib.frames():
            return fget(self)
        return method(self)

    return _tag(getter, "_mh_wrapped")


def _renamed(f: Callable, name: str) -> Callable:
    if f.__name__ == name:
        return f

    @functools.wraps(f)
    def renamed(self):
        return f(self)

    renamed.__name__ = name
    return renamed


def _no_init_error(module: Any) -> errors.ModuleDefinitionError:
    cls = type(module).__name__
    return errors.ModuleDefinitionError(
        f"{cls} was not initialised as a module: {cls}.__init__ must call "
        "super().__init__(name=...) before its methods are used.")


def _reuse_error(module: Any, method_name: str) -> errors.ModuleReuseError:
    return errors.ModuleReuseError(
        f"{module!r} was built in another run of init/apply and is now called "
        f"({method_name}) in this one. Here it would share the path "
        f"'{module._mh_path}' with whatever this run builds there, silently. "
        "Fix: build modules inside the transformed function, on every call "
        "(e.g. `def f(x): return MyModule()(x)`), not once outside and reused; "
        "store configuration, not module instances.")


def _scoped_init(init: Callable, post_init: bool = False) -> Callable:
    """Wraps a subclass's ``__init__`` (or dataclass ``__post_init__``).

    The outermost wrapped ``__init__`` of a construction makes the module the
    frame's ``init_owner``, so ``Module.__init__`` switches the scope to
    ``<path>/__init__`` (fresh counters) for the submodules built after it,
    and restores the caller's scope when construction ends. ``__init__``s
    reached through ``super()`` run unwrapped. Classes without an
    ``__init__`` of their own pay nothing.
    """

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        stack = frame_lib.frames()
        if not stack:  # Let Module.__init__ (or a subclass) say what is wrong.
            return init(self, *args, **kwargs)
        frame = stack[-1]
        init_owner = frame.init_owner
        if init_owner is self:
            return init(self, *args, **kwargs)
        scope, counters, owner = frame.scope, frame.counters, frame.owner
        frame.init_owner = self
        try:
            init(self, *args, **kwargs)
        finally:
            frame.scope, frame.counters, frame.owner = scope, counters, owner
            frame.init_owner = init_owner
        if post_init and "_mh_path" not in self.__dict__:
            # A dataclass whose __post_init__ did not call super().__post_init__():
            # name it now, in the caller's scope.
            Module.__init__(self, getattr(self, "name", None))

    return _tag(wrapped, "_mh_scoped")


class Module:
    """Base class of minihaiku modules.

    Attributes:
      keeps_float32: set ``True`` on a class whose math needs float32 whatever
        the enclosing precision policy (norms: their statistics); policies
        then leave it in float32 unless one names it.

    ``__call__``, every public method and every public property are module
    methods automatically. Submodules built in ``__init__`` (after
    ``super().__init__()``) live under ``<path>/__init__``. A
    ``@dataclasses.dataclass`` subclass works too; an optional ``name`` field
    names it.

    Example::

      class Scale(mh.Module):
        def __call__(self, x):
          return x * mh.get_param("s", (), init=jax.nn.initializers.ones)

      f = mh.transform(lambda x: Scale()(x))   # param '~/Scale_0/__call__/s'
    """

    keeps_float32: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attr, value in list(vars(cls).items()):
            if (attr in ("__init__", "__post_init__") and inspect.isfunction(value)
                    and not getattr(value, "_mh_scoped", False)):
                setattr(cls, attr, _scoped_init(value, attr == "__post_init__"))
                continue
            if attr != "__call__" and attr.startswith("_"):
                continue
            if inspect.isfunction(value):
                setattr(cls, attr, module_method(value))
            elif (isinstance(value, property) and value.fget is not None
                  and not getattr(value.fget, "_mh_wrapped", False)):
                setattr(cls, attr, property(_property_method(value.fget, attr),
                                            value.fset, value.fdel, value.__doc__))

    def __init__(self, name: str | None = None):
        frame = frame_lib.current_frame("Building a mh.Module")
        # _name inlined: this runs for every module built, eagerly per call.
        if name is None:
            base = type(self).__name__
        else:  # A class name is always valid; a given one is checked.
            checks.check_name("Module", name, f"of {type(self).__name__}")
            base = name
        counters = frame.counters
        n = counters.get(base, 0)
        counters[base] = n + 1
        self.module_name = module_name = f"{base}_{n}"
        self._mh_path = path = f"{frame.scope}/{module_name}"
        self._mh_run_id = frame.run_id
        if frame.init_owner is self:
            # The rest of the subclass's __init__ builds submodules under it;
            # its wrapper (_scoped_init) restores the caller's scope afterwards.
            frame.scope, frame.counters, frame.owner = f"{path}/__init__", {}, path

    def __post_init__(self):
        """Names a ``@dataclasses.dataclass`` module (from its ``name`` field)."""
        Module.__init__(self, getattr(self, "name", None))

    @property
    def module_path(self) -> str:
        """Where this module lives, e.g. ``~/MLP_0/__call__/Linear_1``."""
        return self._mh_path

    def __repr__(self) -> str:
        path = getattr(self, "_mh_path", "<not initialised>")
        return f"{type(self).__name__}({path})"
