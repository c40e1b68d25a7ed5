"""Stacked params and state: one slice per layer (``layer_stack``) or member (ensembles).

Inside ``layer_stack`` and ``vmap(params_axis=0)`` every param and state
entry the body uses is stacked, with a leading axis of the number of layers
or members. The body's frame holds one slice of each existing stacked entry
(:class:`Slices`); entries it creates come out stacked.
"""

from typing import Any

import jax

from minihaiku import errors


def leading(values: Any, size: int) -> dict:
    """The entries of ``values`` with a leading axis of ``size``: the stacked candidates."""
    return {p: v for p, v in values.items() if jax.numpy.ndim(v) and v.shape[0] == size}


class Slices(dict):
    """One slice of each stacked entry, as the body's frame params (or state).

    A path that exists outside but is not stacked with this size cannot be
    this slice's entry: reading it is a ``MismatchError`` naming its shape.

    Args:
      slices: path -> this layer's (member's) slice.
      outside: every entry of the enclosing frame.
      size: the leading axis of the stacked entries.
      where: ``(owner, kind, other, fix)`` phrases for the error message, e.g.
        ``("mh.lifted.layer_stack(3)", "per-layer", "a stack of another
        depth", "init and apply with the same num_layers")``.
    """

    __slots__ = ("_outside", "_size", "_where")

    def __init__(self, slices: Any, outside: Any, size: int, where: tuple):
        super().__init__(slices)
        self._outside = outside
        self._size = size
        self._where = where

    def get(self, path, default=None):
        value = dict.get(self, path, _ABSENT)
        if value is not _ABSENT:
            return value
        if path in self._outside:
            raise _mismatch(path, self._outside[path], self._size, self._where)
        return default


def check_created(created: Any, outside: Any, size: int, where: tuple) -> None:
    """Refuses entries created stacked at a path that exists unstacked outside.

    A body's nested lifted op reads through a plain copy of the slices, so it
    could create such a path again instead of failing to read it.
    """
    for path in created:
        if path in outside:
            raise _mismatch(path, outside[path], size, where)


def _mismatch(path: str, value: Any, size: int, where: tuple) -> errors.MismatchError:
    owner, kind, other, fix = where
    shape = tuple(jax.numpy.shape(value))
    return errors.MismatchError(
        f"{owner} reads '{path}', which exists with shape {shape}: its leading "
        f"axis is not {size}. Every param and state entry used inside "
        f"{owner} is {kind}, stacked with a leading axis of {size}; "
        f"'{path}' was made outside it or by {other}. Fix: build the modules "
        f"used inside it there (or call them outside), and {fix}.")


_ABSENT = object()
