"""Keys inside lifted transforms: carried keys, and a key sequence that has none.

A lifted op draws one key from the outer frame's rng and hands the body a
key derived from it. Inside ``while_loop``'s ``cond_fun`` no key may be drawn
(it runs an unknown number of times), yet ``cond_fun`` may still call lifted
ops (``remat``, ``vmap``, ...) that draw nothing. So its rng is a
:class:`NoKeys`: it flows through every lifted op like a key (it splits into
itself and crosses JAX transforms as an empty pytree) and raises only when a
key is actually drawn from it.
"""

from typing import Any

import jax

from minihaiku import errors


class NoKeys:
    """A key sequence from which drawing a key is a ``LiftedBodyError``.

    Supports the sequence protocol lifted ops use (``next``, ``snapshot``,
    ``restore``), so code that only passes it on keeps working.
    """

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message

    def __iter__(self):
        return self

    def __next__(self):
        raise errors.LiftedBodyError(self.message)

    def snapshot(self) -> "NoKeys":
        return self

    def restore(self, snapshot: Any) -> None:
        del snapshot  # nothing was drawn, so there is nothing to continue from


jax.tree_util.register_pytree_node(
    NoKeys, lambda keys: ((), keys.message), lambda message, _: NoKeys(message))


def is_key(key: Any) -> bool:
    """Whether ``key`` is a real key (not ``None`` or a :class:`NoKeys`)."""
    return isinstance(key, jax.Array)


def split_carried_key(key: Any) -> tuple:
    """Splits a carried loop key into ``(next carried key, this step's key)``."""
    if not is_key(key):
        return key, key
    carried, step = jax.random.split(key)
    return carried, step


def split_stacked(key: Any, n: int) -> Any:
    """``n`` keys stacked on a leading axis (scanned over), or ``key`` if it is no key."""
    return jax.random.split(key, n) if is_key(key) else key


def split_list(key: Any, n: int) -> list:
    """``n`` keys as a list (``[key] * n`` if ``key`` is no key)."""
    return list(jax.random.split(key, n)) if is_key(key) else [key] * n
