"""``transform``: turn a function using params, state and keys into pure ones.

``init`` runs the function in a fresh frame that creates params (and state);
``apply`` runs it in a frame that only reads them. Both push the frame before
calling the function and pop it in ``finally``, so an exception never leaves
a frame behind.
"""

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import rng as rng_lib

Params = dict
State = dict


class Transformed(NamedTuple):
    """``init(rng, *a, **kw) -> params``; ``apply(params, rng, *a, **kw) -> out``."""
    init: Callable[..., Params]
    apply: Callable[..., Any]


class TransformedWithState(NamedTuple):
    """``init(rng, ...) -> (params, state)``; ``apply(params, state, rng, ...) -> (out, state)``."""
    init: Callable[..., tuple]
    apply: Callable[..., tuple]


def _run(f, args, kwargs, params, state, rng, is_init, allow_state):
    """Runs ``f`` inside a new frame; returns its output and the frame."""
    frame = frame_lib.Frame(params, state, _sequence(rng), is_init,
                            allow_state)
    frame_lib.push(frame)
    try:
        out = f(*args, **kwargs)
    finally:
        frame_lib.pop(frame)
    return out, frame


def _sequence(rng):
    if rng is None:
        return None
    # One conversion; PRNGSequence(rng) would convert again and name itself.
    return rng_lib.PRNGSequence.from_snapshot((rng_lib.as_key(rng), ()))


def _wraps(f):
    """``functools.wraps`` without ``__wrapped__``.

    ``__wrapped__`` would make ``inspect.signature`` report ``f``'s signature,
    and ``jax.jit(apply, static_argnums=...)`` validates against it.
    """
    def decorate(g):
        g = functools.wraps(f)(g)
        del g.__wrapped__
        return g
    return decorate


def _mapping(value: Any, what: str, call: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise errors.InvalidArgumentError(
            f"{call}: {what} must be the dict returned by init, got "
            f"{type(value).__name__}. Fix: check the argument order, "
            f"{call}.")
    return value


def transform(f: Callable[..., Any]) -> Transformed:
    """Turns ``f``, which may call ``get_param`` and ``next_rng_key``, into pure functions.

    Example::

      init, apply = mh.transform(lambda x: mh.nn.Linear(3)(x))
      x = jnp.ones((2, 4))
      params = init(jax.random.PRNGKey(0), x)
      out = apply(params, None, x)
    """

    @_wraps(f)
    def init_fn(rng: Any, *args: Any, **kwargs: Any) -> Params:
        _, frame = _run(f, args, kwargs, {}, {}, rng, True, False)
        return frame.params

    @_wraps(f)
    def apply_fn(params, rng, *args, **kwargs):
        params = _mapping(params, "params", "apply(params, rng, *args)")
        out, _ = _run(f, args, kwargs, params, {}, rng, False, False)
        return out

    return Transformed(init_fn, apply_fn)


def transform_with_state(f: Callable[..., Any]) -> TransformedWithState:
    """Like :func:`transform`, also threading state set with ``set_state``.

    Example::

      def f():
        n = mh.get_state("n", (), jnp.int32, init=jnp.zeros)
        mh.set_state("n", n + 1)
        return n

      init, apply = mh.transform_with_state(f)
      params, state = init(None)        # state == {'~/n': 0}
      out, state = apply(params, state, None)  # state == {'~/n': 1}
    """

    @_wraps(f)
    def init_fn(rng: Any, *args: Any, **kwargs: Any) -> tuple:
        _, frame = _run(f, args, kwargs, {}, {}, rng, True, True)
        return frame.params, frame.initial_state

    @_wraps(f)
    def apply_fn(params: Any, state: Any, rng: Any, *args: Any, **kwargs: Any) -> tuple:
        call = "apply(params, state, rng, *args)"
        params = _mapping(params, "params", call)
        state = dict(_mapping(state, "state", call))
        out, frame = _run(f, args, kwargs, params, state, rng, False, True)
        return out, frame.state

    return TransformedWithState(init_fn, apply_fn)


def without_apply_rng(
        transformed: Transformed | TransformedWithState
) -> Transformed | TransformedWithState:
    """Drops the ``rng`` argument of ``apply`` (for functions drawing no key).

    Example::

      init, apply = mh.without_apply_rng(mh.transform(lambda x: mh.nn.Linear(3)(x)))
      x = jnp.ones((2, 4))
      params = init(0, x)
      out = apply(params, x)
    """
    if isinstance(transformed, TransformedWithState):
        apply = transformed.apply

        @_wraps(apply)
        def apply_with_state(params, state, *args, **kwargs):
            return apply(params, state, None, *args, **kwargs)

        return TransformedWithState(transformed.init, apply_with_state)
    if isinstance(transformed, Transformed):
        apply = transformed.apply

        @_wraps(apply)
        def apply_fn(params, *args, **kwargs):
            return apply(params, None, *args, **kwargs)

        return Transformed(transformed.init, apply_fn)
    raise errors.InvalidArgumentError(
        "without_apply_rng expects the result of mh.transform or "
        f"mh.transform_with_state, got {type(transformed).__name__}.")


def running_init() -> bool:
    """Whether the innermost transformed function is running ``init``."""
    return frame_lib.current_frame("mh.running_init()").is_init


def inside_transform() -> bool:
    """Whether we are inside a transformed function (in this thread)."""
    return bool(frame_lib.frames())
