"""Random keys: ``PRNGSequence``, ``next_rng_key`` and ``maybe_next_rng_key``."""

from typing import Iterator, Optional, Union

import jax
import numpy as np

from minihaiku import errors
from minihaiku import frame as frame_lib

KeyLike = Union[jax.Array, int, None]

# Keys are split off in blocks: one `split` serves this many draws, which
# keeps eager key drawing cheap. Part of the key schedule: changing it
# changes every param and key drawn for a given seed.
_BLOCK = 16


def as_key(rng: KeyLike, where: str = "rng") -> Optional[jax.Array]:
    """Turns an int seed, a raw ``uint32`` key or a typed key into a key.

    ``None`` stays ``None``. Anything else is a clear error.
    """
    if rng is None:
        return None
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return jax.random.PRNGKey(rng)
    dtype = getattr(rng, "dtype", None)
    shape = getattr(rng, "shape", None)
    if dtype is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            return rng
        if dtype == np.uint32 and len(shape) == 1:
            return rng
        if shape == () and jax.dtypes.issubdtype(dtype, np.integer):
            return jax.random.PRNGKey(rng)
    raise errors.MiniHaikuError(
        f"{where} must be a JAX PRNG key (jax.random.key(0) or "
        "jax.random.PRNGKey(0)), an int seed, or None; got "
        f"{type(rng).__name__} with shape {shape} and dtype {dtype}. Fix: "
        "pass e.g. jax.random.PRNGKey(42) or 42.")


class PRNGSequence(Iterator[jax.Array]):
    """An endless iterator of distinct keys derived from one seed or key.

    Usable anywhere, inside or outside a transform::

      seq = mh.PRNGSequence(42)
      k1, k2 = next(seq), next(seq)
    """

    __slots__ = ("_key", "_block", "_used")

    def __init__(self, key_or_seed: Union[jax.Array, int]):
        if key_or_seed is None:
            raise errors.MiniHaikuError(
                "PRNGSequence needs a key or an int seed, got None.")
        self._key = as_key(key_or_seed, "PRNGSequence's seed")
        self._block: list = []
        self._used = 0

    def _reserve(self, n: int) -> None:
        """Splits off a fresh block of ``n`` keys (pending ones must be used up)."""
        # One unstack of the whole block is far cheaper eagerly than indexing
        # the split array once per key.
        keys = list(jax.random.split(self._key, n + 1))
        self._key = keys[0]
        self._block = keys[1:]
        self._used = 0

    def __next__(self) -> jax.Array:
        if self._used >= len(self._block):
            self._reserve(_BLOCK)
        key = self._block[self._used]
        self._used += 1
        return key

    next = __next__

    def snapshot(self) -> tuple:
        """``(key, pending keys)``: the arrays that fix every future draw.

        Lets a lifted transform carry the sequence across a JAX boundary as
        plain arrays, so the keys drawn inside are the ones drawn without it.
        """
        return self._key, tuple(self._block[self._used:])

    def restore(self, snapshot: tuple) -> None:
        """Continues from a :meth:`snapshot` (possibly one taken elsewhere)."""
        self._key, pending = snapshot
        self._block, self._used = list(pending), 0

    @classmethod
    def from_snapshot(cls, snapshot: tuple) -> "PRNGSequence":
        """A sequence that continues from ``snapshot``."""
        seq = cls.__new__(cls)
        seq.restore(snapshot)
        return seq

    def take(self, n: int) -> tuple:
        """The next ``n`` keys as a tuple."""
        return tuple(next(self) for _ in range(n))


def next_rng_key() -> jax.Array:
    """A fresh key from the transform's rng; never the same twice in a call.

    Example::

      def f(x):
        return x + jax.random.normal(mh.next_rng_key(), x.shape)
      out = mh.transform(f).apply({}, 0, x)
    """
    frame = frame_lib.current_frame("mh.next_rng_key()")
    frame_lib.check_trace(frame, "mh.next_rng_key()", frame.scope)
    return draw_key(frame, "mh.next_rng_key()")


def maybe_next_rng_key() -> Optional[jax.Array]:
    """Like :func:`next_rng_key`, but ``None`` when the transform got no rng."""
    frame = frame_lib.current_frame("mh.maybe_next_rng_key()")
    frame_lib.check_trace(frame, "mh.maybe_next_rng_key()", frame.scope)
    return None if frame.rng is None else next(frame.rng)


def draw_key(frame: frame_lib.Frame, what: str) -> jax.Array:
    """Draws a key from ``frame`` or raises a ``NoRngError`` naming ``what``."""
    if frame.rng is None:
        raise no_rng_error(what)
    return next(frame.rng)


def no_rng_error(what: str) -> errors.NoRngError:
    """The error for ``what`` needing a key in a transform given ``rng=None``."""
    return errors.NoRngError(
        f"{what} needs a random key, but this transformed function was "
        "called with rng=None. Fix: pass a key or seed, e.g. "
        "`init(jax.random.PRNGKey(0), x)` or `apply(params, 42, x)` (and "
        "don't wrap it in mh.without_apply_rng).")
