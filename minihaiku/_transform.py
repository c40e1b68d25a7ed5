"""``transform``: turn a function using params, state and keys into pure ones.

``init`` runs the function in a fresh frame that creates params (and state);
``apply`` runs it in a frame that only reads them. Both push the frame before
calling the function and pop it in ``finally``, so an exception never leaves
a frame behind.
"""

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import interceptors as hooks_lib
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


class MultiTransformed(NamedTuple):
    """``init(rng, *a) -> params``; ``apply``: a pytree of ``apply(params, rng, *a)``."""
    init: Callable[..., dict]
    apply: Any


class MultiTransformedWithState(NamedTuple):
    """``init -> (params, state)``; ``apply``: a pytree of ``(params, state, rng, *a)``."""
    init: Callable[..., tuple]
    apply: Any


def run(f: Callable, args: tuple, kwargs: Mapping, params: Mapping, state: dict,
        rng: Any, is_init: bool, allow_state: bool) -> tuple:
    """Runs ``f`` in a new run's frame; returns its output and the frame.

    Every transform variant (``transform``, ``transform_with_state`` and the
    entries of ``multi_transform``) runs its function here.
    """
    frame = frame_lib.Frame(params, state, _sequence(rng), is_init, allow_state,
                            hooks=hooks_lib.for_frame(None))
    with frame_lib.running(frame, observed=True):
        out = f(*args, **kwargs)
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


def mapping(value: Any, what: str, call: str) -> Mapping:
    """``value`` if it is a Mapping (params or state), else a clear error."""
    if not isinstance(value, Mapping):
        raise errors.InvalidArgumentError(
            f"{call}: {what} must be the dict returned by init, got "
            f"{type(value).__name__}. Fix: check the argument order, "
            f"{call}.")
    return value


def pure_functions(f: Callable[..., Any], with_state: bool) -> tuple[Any, Any]:
    """The ``(init, apply)`` pair of ``f``: the one builder of every transform variant."""
    if with_state:
        @_wraps(f)
        def init_with_state(rng: Any, *args: Any, **kwargs: Any) -> tuple:
            _, frame = run(f, args, kwargs, {}, {}, rng, True, True)
            return frame.params, frame.initial_state

        @_wraps(f)
        def apply_with_state(params: Any, state: Any, rng: Any, *args: Any,
                             **kwargs: Any) -> tuple:
            call = "apply(params, state, rng, *args)"
            params = mapping(params, "params", call)
            state = dict(mapping(state, "state", call))
            out, frame = run(f, args, kwargs, params, state, rng, False, True)
            return out, frame.state

        return init_with_state, apply_with_state

    @_wraps(f)
    def init_fn(rng: Any, *args: Any, **kwargs: Any) -> Params:
        _, frame = run(f, args, kwargs, {}, {}, rng, True, False)
        return frame.params

    @_wraps(f)
    def apply_fn(params, rng, *args, **kwargs):
        params = mapping(params, "params", "apply(params, rng, *args)")
        out, _ = run(f, args, kwargs, params, {}, rng, False, False)
        return out

    return init_fn, apply_fn


def transform(f: Callable[..., Any]) -> Transformed:
    """Turns ``f``, which may call ``get_param`` and ``next_rng_key``, into pure functions.

    Example::

      init, apply = mh.transform(lambda x: mh.nn.Linear(3)(x))
      x = jnp.ones((2, 4))
      params = init(jax.random.PRNGKey(0), x)
      out = apply(params, None, x)
    """
    return Transformed(*pure_functions(f, with_state=False))


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
    return TransformedWithState(*pure_functions(f, with_state=True))


def without_apply_rng(transformed: Any) -> Any:
    """Drops the ``rng`` argument of ``apply`` (for functions drawing no key).

    Takes the result of ``transform``, ``transform_with_state`` or either
    ``multi_transform`` (then every entry of its ``apply`` loses it).

    Example::

      init, apply = mh.without_apply_rng(mh.transform(lambda x: mh.nn.Linear(3)(x)))
      x = jnp.ones((2, 4))
      params = init(0, x)
      out = apply(params, x)
    """
    if not isinstance(transformed, (Transformed, TransformedWithState, MultiTransformed,
                                    MultiTransformedWithState)):
        raise errors.InvalidArgumentError(
            "without_apply_rng expects the result of mh.transform, "
            "mh.transform_with_state or mh.multi_transform(_with_state), got "
            f"{type(transformed).__name__}.")
    before_rng = 2 if isinstance(transformed, (TransformedWithState,
                                               MultiTransformedWithState)) else 1
    apply = jax.tree_util.tree_map(lambda a: _without_rng(a, before_rng), transformed.apply)
    return type(transformed)(transformed.init, apply)  # type: ignore[arg-type]


def _without_rng(apply: Callable, before_rng: int) -> Callable:
    @_wraps(apply)
    def apply_fn(*args, **kwargs):
        return apply(*args[:before_rng], None, *args[before_rng:], **kwargs)
    return apply_fn


def running_init() -> bool:
    """Whether the innermost transformed function is running ``init``."""
    return frame_lib.current_frame("mh.running_init()").is_init


def inside_transform() -> bool:
    """Whether we are inside a transformed function (in this thread)."""
    return bool(frame_lib.frames())
