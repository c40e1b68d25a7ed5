"""``mh.config``: library-wide switches.

Read a switch as an attribute (``mh.config.profiler_names``); change it with
:func:`update` or, for a block of code, :func:`override`.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

from minihaiku import errors
from minihaiku import interceptors as hooks_lib

# Whether each module method runs under `jax.named_scope(<its path>)` while
# traced. On by default: frames decide it once when pushed, so eager calls
# never pay for it (see docs/guides/interceptors.md for the measured cost).
profiler_names = True

_SWITCHES = {"profiler_names": hooks_lib.set_profiler_names}


def update(name: str, value: Any) -> None:
    """Sets the switch ``name`` to ``value``.

    Example::

      mh.config.update("profiler_names", True)
      mh.config.update("profiler_names", False)
    """
    setter = _SWITCHES.get(name)
    if setter is None:
        raise errors.InvalidArgumentError(
            f"mh.config has no switch {name!r}. Known switches: {sorted(_SWITCHES)}.")
    if not isinstance(value, bool):
        raise errors.InvalidArgumentError(
            f"mh.config.update({name!r}, {value!r}): the value must be a bool.")
    globals()[name] = value
    setter(value)


@contextlib.contextmanager
def override(**switches: Any) -> Iterator[None]:
    """Sets switches for the length of a ``with`` block, then restores them.

    Example::

      with mh.config.override(profiler_names=True):
        text = jax.jit(apply).lower(params, None, x).as_text()
    """
    old = {}
    try:
        for name, value in switches.items():
            current = globals().get(name)
            update(name, value)
            old[name] = current
        yield
    finally:
        for name, value in old.items():
            update(name, value)
