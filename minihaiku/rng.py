"""Random keys: ``PRNGSequence``, ``next_rng_key(s)``, ``maybe_next_rng_key``, ``with_rng``."""

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, overload

import jax
import numpy as np

from minihaiku import checks, errors
from minihaiku import frame as frame_lib

KeyLike = jax.Array | int | None

# Keys are split off in blocks: one `split` serves this many draws, which
# keeps eager key drawing cheap. Part of the key schedule: changing it
# changes every param and key drawn for a given seed.
_BLOCK = 16


def _raw_key_shape() -> tuple:
    """The shape of a raw key of the default PRNG impl (``(2,)`` for threefry)."""
    impl = jax.config.jax_default_prng_impl  # type: ignore[attr-defined]  # jax.config's flags are dynamic attributes, not in its stubs
    shape = _RAW_KEY_SHAPES.get(impl)
    if shape is None:
        shape = _RAW_KEY_SHAPES[impl] = jax.eval_shape(
            lambda: jax.random.PRNGKey(0)).shape
    return shape


_RAW_KEY_SHAPES: dict = {}


@overload
def as_key(rng: None, where: str = ...) -> None: ...
@overload
def as_key(rng: jax.Array | int, where: str = ...) -> jax.Array: ...


def as_key(rng: KeyLike, where: str = "rng") -> jax.Array | None:
    """Turns an int seed, a raw ``uint32`` key or a typed key into a key.

    ``None`` stays ``None``. Anything else (a float, a string, a ``uint32``
    array of the wrong shape, a seed that overflows) is an ``InvalidRngError``.
    """
    if rng is None:
        return None
    if isinstance(rng, bool):  # an int to Python, never a seed
        raise _invalid(where, f"bool {rng!r}")
    dtype = getattr(rng, "dtype", None)
    shape = getattr(rng, "shape", None)
    if isinstance(rng, (int, np.integer)):
        return _from_seed(rng, where)
    if dtype is not None and shape is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            if shape == ():
                return rng
        elif dtype == np.uint32 and tuple(shape) == _raw_key_shape():
            return rng
        elif shape == () and jax.dtypes.issubdtype(dtype, np.integer):
            return _from_seed(rng, where)
    if dtype is None:
        got = f"{type(rng).__name__} {rng!r:.60}"
    else:
        got = f"{type(rng).__name__} with shape {shape} and dtype {dtype}"
    raise _invalid(where, got)


def _from_seed(seed: Any, where: str) -> jax.Array:
    try:
        return jax.random.PRNGKey(seed)
    except (OverflowError, TypeError, ValueError) as e:
        raise _invalid(where, f"the int seed {seed!r}, which does not fit "
                              f"the seed type ({e})") from e


def _invalid(where: str, got: str) -> errors.InvalidRngError:
    raw = "uint32" + str(list(_raw_key_shape())).replace(" ", "")
    return errors.InvalidRngError(
        f"{where} must be a JAX PRNG key, an int seed, or None; got {got}. A "
        f"key is a typed key of shape () (jax.random.key(0)) or a raw key "
        f"{raw} (jax.random.PRNGKey(0), the default impl's key shape); a seed "
        "is an int in the int64 range. Fix: pass e.g. "
        "jax.random.PRNGKey(42) or 42.")


class PRNGSequence(Iterator[jax.Array]):
    """An endless iterator of distinct keys derived from one seed or key.

    Usable anywhere, inside or outside a transform, and safe to share between
    threads: a lock guards each draw, so no two draws ever return the same
    key (which thread gets which key then depends on timing)::

      seq = mh.PRNGSequence(42)
      k1, k2 = next(seq), next(seq)
    """

    __slots__ = ("_key", "_block", "_used", "_lock")

    def __init__(self, key_or_seed: jax.Array | int):
        if key_or_seed is None:
            raise errors.InvalidRngError(
                "PRNGSequence needs a key or an int seed, got None. Fix: pass "
                "e.g. mh.PRNGSequence(42) or mh.PRNGSequence(jax.random.key(0)).")
        self._key = as_key(key_or_seed, "PRNGSequence's seed")
        self._block: list = []
        self._used = 0
        self._lock = threading.Lock()

    def _reserve(self, n: int) -> None:
        """Splits off a fresh block of ``n`` keys (pending ones must be used up)."""
        # One unstack of the whole block is far cheaper eagerly than indexing
        # the split array once per key.
        keys = list(jax.random.split(self._key, n + 1))
        self._key = keys[0]
        self._block = keys[1:]
        self._used = 0

    def __next__(self) -> jax.Array:
        # An uncontended lock costs ~0.1 µs, next to the µs a split takes.
        with self._lock:
            if self._used >= len(self._block):
                self._reserve(_BLOCK)
            key = self._block[self._used]
            self._used += 1
            return key

    def snapshot(self) -> tuple:
        """``(key, pending keys)``: the arrays that fix every future draw.

        Lets a lifted transform carry the sequence across a JAX boundary as
        plain arrays, so the keys drawn inside are the ones drawn without it.
        """
        with self._lock:
            return self._key, tuple(self._block[self._used:])

    def restore(self, snapshot: tuple) -> None:
        """Continues from a :meth:`snapshot` (possibly one taken elsewhere)."""
        with self._lock:
            self._key, pending = snapshot
            self._block, self._used = list(pending), 0

    @classmethod
    def from_snapshot(cls, snapshot: tuple) -> "PRNGSequence":
        """A sequence that continues from ``snapshot``."""
        seq = cls.__new__(cls)
        seq._lock = threading.Lock()
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
      out = mh.transform(f).apply({}, 0, jnp.zeros(3))
    """
    frame = frame_lib.current_frame("mh.next_rng_key()")
    frame_lib.check_trace(frame, "mh.next_rng_key()", frame.scope)
    return _draw_key(frame, "mh.next_rng_key()")


def maybe_next_rng_key() -> jax.Array | None:
    """Like :func:`next_rng_key`, but ``None`` when the transform got no rng."""
    frame = frame_lib.current_frame("mh.maybe_next_rng_key()")
    frame_lib.check_trace(frame, "mh.maybe_next_rng_key()", frame.scope)
    return None if frame.rng is None else next(frame.rng)


def _draw_key(frame: frame_lib.Frame, what: str) -> jax.Array:
    """Draws a key from ``frame`` or raises a ``NoRngError`` naming ``what``."""
    if frame.rng is None:
        raise checks.no_rng_error(what)
    return next(frame.rng)


def next_rng_keys(n: int) -> jax.Array:
    """``n`` fresh keys stacked in one array, from one draw of the rng.

    Args:
      n: how many keys (a non-negative int).

    Returns:
      An array of ``n`` keys: ``[n, 2]`` raw keys, or ``[n]`` typed keys,
        matching the transform's rng.

    Example::

      def f(x):
        keys = mh.next_rng_keys(3)
        return jax.vmap(lambda k: jax.random.normal(k, x.shape))(keys)
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise errors.InvalidArgumentError(
            f"mh.next_rng_keys(n) needs a non-negative int n, got {n!r}. Fix: "
            "pass e.g. mh.next_rng_keys(4).")
    frame = frame_lib.current_frame("mh.next_rng_keys()")
    frame_lib.check_trace(frame, "mh.next_rng_keys()", frame.scope)
    return jax.random.split(_draw_key(frame, "mh.next_rng_keys()"), int(n))


@contextlib.contextmanager
def with_rng(key: jax.Array | int) -> Iterator[None]:
    """Inside the block, keys are drawn from ``key``'s sequence.

    Works in a transform given ``rng=None`` too: the block then has keys.
    Lifted transforms called in the block draw from it as well. Leaving the
    block restores the transform's own sequence where it left off.

    Args:
      key: a key or an int seed (validated as any rng).

    Example::

      def f():
        with mh.with_rng(jax.random.key(7)):
          return mh.next_rng_key()   # the first key of PRNGSequence(key(7))
    """
    frame = frame_lib.current_frame("mh.with_rng()")
    if key is None:
        raise errors.InvalidRngError(
            "mh.with_rng needs a key or an int seed, got None. Fix: pass e.g. "
            "mh.with_rng(jax.random.key(0)).")
    seq = PRNGSequence.from_snapshot((as_key(key, "mh.with_rng's key"), ()))
    outer = frame.rng
    frame.rng = seq
    try:
        yield
    finally:
        frame.rng = outer
