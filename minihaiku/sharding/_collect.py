"""Collects the logical axes that ``get_param(..., axes=...)`` declares.

A collector is active only while :func:`collecting` runs (``mh.sharding``
traces ``init`` under it with ``jax.eval_shape``). ``get_param`` calls
:func:`record` only when it creates a param, never when it reads one, so
``apply`` pays nothing and ``init`` returns nothing but its params.
"""

import contextlib
import threading
from collections.abc import Iterator, Sequence

from minihaiku import errors


class _Collectors(threading.local):
    def __init__(self):
        self.stack: list = []


_COLLECTORS = _Collectors()


@contextlib.contextmanager
def collecting() -> Iterator[dict]:
    """Within the block, every param created with ``axes`` is recorded in the dict yielded."""
    axes: dict = {}
    _COLLECTORS.stack.append(axes)
    try:
        yield axes
    finally:
        _COLLECTORS.stack.pop()


def record(path: str, axes: Sequence, shape: tuple) -> None:
    """Checks ``axes`` against ``shape``; records them if a collector is active."""
    if (not isinstance(axes, (tuple, list)) or len(axes) != len(shape)
            or not all(a is None or isinstance(a, str) for a in axes)):
        raise errors.InvalidArgumentError(
            f"Param '{path}' of shape {shape} was given axes={axes!r}: axes must "
            f"be a tuple of {len(shape)} logical axis names (str, or None for an "
            "axis never sharded), one per dimension. Fix: e.g. "
            f"axes={tuple(['embed', 'mlp', 'heads', 'kv'][:len(shape)])!r}.")
    if _COLLECTORS.stack:
        _COLLECTORS.stack[-1][path] = tuple(axes)
