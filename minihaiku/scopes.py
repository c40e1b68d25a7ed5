"""Paths without writing a ``Module`` class: ``name_scope`` and ``to_module``."""

import contextlib
from collections.abc import Callable, Iterator

from minihaiku import checks, errors
from minihaiku import frame as frame_lib
from minihaiku import module as module_lib


@contextlib.contextmanager
def name_scope(name: str) -> Iterator[None]:
    """Adds the path segment ``name`` to params, state and modules made inside.

    Inside a module method, state goes to ``<module path>/<name>/...``
    (state belongs to the module, not to its method).

    Modules built in the block are counted per scope: entering the same name
    scope again in the same method call continues the count (``Linear_1``
    after ``Linear_0``), so two blocks never share a module's params by
    accident; ``get_param("w")`` in both blocks is the same param, as it is
    twice in one method.

    Args:
      name: one segment: a non-empty string without '/'.

    Example::

      def f(x):
        with mh.name_scope("block"):
          return mh.nn.Linear(3)(x)    # '~/block/Linear_0/__call__/w'
    """
    frame = frame_lib.current_frame("mh.name_scope")
    checks.check_name("Name scope", name, f"in '{frame.scope}'")
    scope, counters, owner = frame.scope, frame.counters, frame.owner
    key = ("name_scope", name)
    # Copy on entry, store a new dict on exit: lifted transforms copy the
    # counters shallowly per trace, so a stored dict must never be mutated.
    inner = dict(counters.get(key, ()))
    frame.scope, frame.counters, frame.owner = f"{scope}/{name}", inner, f"{owner}/{name}"
    try:
        yield
    finally:
        frame.scope, frame.counters, frame.owner = scope, counters, owner
        counters[key] = dict(inner)


def to_module(fn: Callable) -> type:
    """A ``Module`` subclass whose ``__call__`` is ``fn``.

    The class is named after ``fn``, so its instances are ``<fn name>_0``,
    ``<fn name>_1``, ... unless given a ``name``.

    Args:
      fn: any function; what it creates goes under ``<module>/__call__``.

    Returns:
      The class; build it (``Block()`` or ``Block(name="enc")``) inside a
      transformed function and call it like ``fn``.

    Example::

      def block(x):
        return jax.nn.relu(mh.nn.Linear(4)(x))

      Block = mh.to_module(block)
      f = mh.transform(lambda x: Block()(Block()(x)))
      # params '~/block_0/__call__/Linear_0/__call__/w', '~/block_1/...'
    """
    if not callable(fn):
        raise errors.InvalidArgumentError(
            f"mh.to_module needs a function, got {type(fn).__name__}.")

    def __call__(self, *args, **kwargs):
        return fn(*args, **kwargs)

    name = getattr(fn, "__name__", "")
    if not name.isidentifier():
        name = "to_module"
    __call__.__qualname__ = f"{name}.__call__"
    __call__.__doc__ = fn.__doc__
    return type(name, (module_lib.Module,), {
        "__call__": __call__, "__doc__": fn.__doc__,
        "__module__": getattr(fn, "__module__", __name__)})
