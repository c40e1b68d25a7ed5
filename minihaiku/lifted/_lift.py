"""The one mechanism every lifted transform uses to cross a JAX boundary.

A lifted transform takes the outer frame's params, state and a key drawn from
its rng, passes them *explicitly* into the JAX transform, builds a new frame
inside the traced function (so ``check_trace`` sees the inner trace), runs the
user's function there, and returns the new params and state as ordinary
outputs of the JAX transform. Outside, :meth:`Lift.commit` writes them back
into the outer frame. No value ever crosses the boundary any other way, so
no tracer can leak::

  outer frame (params, state, rng, scope, counters)
     |  Lift(...)       check_trace; snapshot counters
     |  draw_key()      one key from the outer rng
     v
  jax.lax.scan / cond / vmap / checkpoint ... ( state, key, args )  [params closed over]
     |  Lift.run()      push Frame(params, state, PRNGSequence(key), scope, counters)
     |                  f(*args): get_param / get_state / set_state / next_rng_key
     |                  pop
     v  returns         out, new params (init), new state, first values of new state
  Lift.commit()         outer.params/state/initial_state/counters updated

The inner frame starts from the outer frame's scope and a copy of its module
counters, so modules built inside the body get the paths they would get if
built outside. JAX may trace a body more than once (e.g. ``lax.scan``
re-traces when weak types change), so every trace starts from the same copy
of the counters (``start_counters``) and only the counters of the last trace
are kept (``end_counters``).

In init, loops and branches first run their body once outside the JAX
transform (:meth:`Lift.init_pass`), so the params and state it creates are
real values; the traced body then only reads them. Eagerly, the JAX transform
itself runs through ``_eager_cache.run_transform``.
"""

import collections
import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import jax
import numpy as np

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import interceptors as hooks_lib
from minihaiku import rng as rng_lib
from minihaiku.lifted import _keys

# What an inner frame draws keys from: a key, a ready sequence, a NoKeys or None.
KeySource = jax.Array | rng_lib.PRNGSequence | _keys.NoKeys | None


class Lift:
    """One call of a lifted transform: the outer frame and the counters chain.

    Attributes:
      name: the lifted function, e.g. ``mh.lifted.scan``; used in messages.
      outer: the frame active when the lifted function was called.
      start_counters: the module counters every traced body starts from.
      end_counters: the counters after the last traced body, or ``None``.
    """

    __slots__ = ("name", "outer", "start_counters", "end_counters")

    def __init__(self, name: str, jax_name: str):
        stack = frame_lib.frames()
        if not stack:
            raise errors.NotInTransformError(
                f"{name} must be called inside a function transformed by "
                "mh.transform or mh.transform_with_state. Outside a transform "
                f"there are no params, state or keys to thread: use {jax_name} "
                "directly.")
        self.name = name
        self.outer = stack[-1]
        # A lifted function inside a raw JAX transform would leak its results
        # out of that transform just like get_param would.
        frame_lib.check_trace(self.outer, name, self.outer.scope)
        self.start_counters = dict(self.outer.counters)
        self.end_counters: dict | None = None

    @property
    def is_init(self) -> bool:
        return self.outer.is_init

    def draw_key(self):
        """One key from the outer rng for the whole lifted call (``None`` or a ``NoKeys``)."""
        rng = self.outer.rng
        if rng is None or isinstance(rng, _keys.NoKeys):
            return rng  # passed on as is: only drawing from a NoKeys is an error
        return next(rng)

    @contextlib.contextmanager
    def frame(self, params: Mapping, state: Mapping, key: KeySource,
              counters: dict | None = None, owned: bool = False) -> Iterator[frame_lib.Frame]:
        """Pushes an inner frame for one run (or trace) of the body.

        ``params`` and ``state`` are copied to plain dicts, so the body never
        mutates what it was given; with ``owned``, they were built for this
        run (e.g. ``layer_stack``'s per-layer slices) and are used as they are.
        ``key`` is a key, a ready sequence (anything ``next`` draws keys from),
        a ``NoKeys`` or ``None``.
        Must be entered inside the JAX transform being lifted.
        """
        outer = self.outer
        if isinstance(key, jax.Array):
            key = rng_lib.PRNGSequence(key)
        inner = frame_lib.Frame(
            params if owned else dict(params), state if owned else dict(state), key,
            outer.is_init, outer.allow_state, outer.scope,
            dict(self.start_counters if counters is None else counters), outer.run_id,
            outer.owner, hooks_lib.for_frame(outer.hooks), outer.axes)
        with frame_lib.running(inner):
            yield inner
        self.end_counters = inner.counters

    def run(self, fn: Callable, args: Sequence, kwargs: Mapping, params: Mapping,
            state: Mapping, key: KeySource,
            counters: dict | None = None, owned: bool = False) -> tuple:
        """Runs ``fn(*args, **kwargs)`` in an inner frame; returns ``(out, frame)``."""
        with self.frame(params, state, key, counters, owned) as inner:
            out = fn(*args, **kwargs)
        return out, inner

    def init_pass(self, key: jax.Array | None, run: Callable[[], object],
                    state: Mapping | None = None,
                    counters: dict | None = None) -> dict:
        """The state a lifted op starts from; in init, first runs the body once.

        During init, ``run()`` is called in an inner frame outside the JAX
        transform, so the params and state it creates are real values; they
        are committed to the outer frame. Returns ``state`` (default: the
        outer state) plus the state created.
        """
        outer = self.outer
        # A plain dict: it crosses the JAX transform as an input (the outer
        # state may be a dict subclass, e.g. layer_stack's per-layer slices).
        state = dict(outer.state if state is None else state)
        if not outer.is_init:
            return state
        with self.frame(outer.params, state, key, counters) as inner:
            run()
        self.commit(created(inner.params, outer.params), {}, inner.initial_state)
        return {**state, **inner.initial_state}

    def step(self, fn: Callable, args: tuple, params: Mapping, state: Mapping,
             key: jax.Array | None) -> tuple:
        """One loop step of ``fn(*args)``; returns ``(out, state, carried key)``.

        The step draws from its own key split off the carried one, may not
        create params or state, and must keep every state entry's type.
        """
        key, step_key = _keys.split_carried_key(key)
        out, inner = self.run(fn, args, {}, params, state, step_key)
        check_nothing_created(self, inner, params, state)
        check_state_kept(self, state, inner.state)
        return out, inner.state, key

    def commit(self, params: Mapping | None = None, state: Mapping | None = None,
               initial_state: Mapping | None = None) -> None:
        """Writes a lifted call's results back into the outer frame.

        Args:
          params: params created inside (init only).
          state: the state after the call (entries to update).
          initial_state: state entries created inside, as first created.
        """
        outer = self.outer
        if params:  # apply's params may be any read-only Mapping
            outer.params.update(params)
        if state:
            outer.state.update(state)
        for path, value in (initial_state or {}).items():
            outer.initial_state.setdefault(path, value)
        if self.end_counters is not None:
            outer.counters.update(self.end_counters)


def as_traced(tree):
    """``tree`` as ``jax.lax`` hands it to a traced body: Python and numpy values as arrays.

    An init pass runs the body on concrete operands outside the JAX
    transform; converting them as ``jax.lax`` does (Python scalars to weakly
    typed arrays) lets the body read ``x.shape`` / ``x.dtype`` in init as in
    apply.
    """
    return jax.tree_util.tree_map(_as_array, tree)


def _as_array(leaf):
    if isinstance(leaf, (bool, int, float, complex, np.ndarray, np.generic)):
        return jax.numpy.asarray(leaf)
    return leaf


def created(inner: Mapping, before: Mapping | None = None) -> collections.OrderedDict:
    """The entries of ``inner`` whose paths are not in ``before``, in creation order.

    An ``OrderedDict``, because JAX rebuilds a plain dict returned from a
    transformed function with sorted keys, while params and state must stay
    in creation order.
    """
    before = before or {}
    return collections.OrderedDict(
        (path, value) for path, value in inner.items() if path not in before)


def check_nothing_created(lift: Lift, inner: frame_lib.Frame, params: Mapping,
                          state: Mapping) -> None:
    """Refuses params or state created inside a JAX transform after the init pass.

    Lifted loops and branches create params and state in an init pass run
    outside the JAX transform; if the traced body then creates more (because
    it behaves differently on the second run), those would be tracers.
    """
    new = list(created(inner.params, params)) + list(created(inner.state, state))
    if new:
        raise errors.LiftedBodyError(
            f"{lift.name} created {new} while tracing its body, but not when "
            "it first ran the body to create params and state. Fix: make the "
            "params and state the body creates independent of its inputs' "
            "values and of running_init().")


def check_state_kept(lift: Lift, before: Mapping, after: Mapping) -> None:
    """Refuses state whose shape or dtype changes inside a loop body."""
    for path, old in before.items():
        new = after[path]
        if (jax.numpy.shape(new) != jax.numpy.shape(old)
                or jax.numpy.result_type(new) != jax.numpy.result_type(old)):
            raise errors.MismatchError(
                f"State '{path}' entered {lift.name} with shape "
                f"{jax.numpy.shape(old)} and dtype {jax.numpy.result_type(old)} "
                f"but the body set it to shape {jax.numpy.shape(new)} and dtype "
                f"{jax.numpy.result_type(new)}. A loop carry must keep its type. "
                "Fix: cast with .astype or reshape before mh.set_state.")
