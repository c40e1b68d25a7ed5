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
of the counters and only the counters of the last trace are kept.
"""

import collections
import contextlib
import functools
import threading
from typing import Callable, Iterator, Mapping, Optional

import jax
import numpy as np
from jax.extend import core as jax_core

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import rng as rng_lib


class Lift:
    """One call of a lifted transform: the outer frame and the counters chain.

    Attributes:
      name: the lifted function, e.g. ``mh.lifted.scan``; used in messages.
      outer: the frame active when the lifted function was called.
      start: the module counters every traced body starts from.
      end: the counters after the last traced body, or ``None``.
    """

    __slots__ = ("name", "outer", "start", "end")

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
        self.start = dict(self.outer.counters)
        self.end = None

    @property
    def is_init(self) -> bool:
        return self.outer.is_init

    def draw_key(self) -> Optional[jax.Array]:
        """One key from the outer rng for the whole lifted call (or ``None``)."""
        rng = self.outer.rng
        return None if rng is None else next(rng)

    @contextlib.contextmanager
    def frame(self, params: Mapping, state: Mapping, key,
              counters: Optional[dict] = None) -> Iterator[frame_lib.Frame]:
        """Pushes an inner frame for one run (or trace) of the body.

        ``params`` and ``state`` are copied, so the body never mutates what it
        was given. ``key`` is a key, a ready sequence (anything ``next``
        draws keys from) or ``None``.
        Must be entered inside the JAX transform being lifted.
        """
        outer = self.outer
        if isinstance(key, jax.Array):
            key = rng_lib.PRNGSequence(key)
        inner = frame_lib.Frame(
            dict(params), dict(state), key,
            outer.is_init, outer.allow_state, outer.scope,
            dict(self.start if counters is None else counters), outer.run)
        frame_lib.push(inner)
        try:
            yield inner
        finally:
            frame_lib.pop(inner)
        self.end = inner.counters

    def run(self, fn: Callable, args: tuple, kwargs: Mapping, params: Mapping,
            state: Mapping, key: Optional[jax.Array],
            counters: Optional[dict] = None) -> tuple:
        """Runs ``fn(*args, **kwargs)`` in an inner frame; returns ``(out, frame)``."""
        with self.frame(params, state, key, counters) as inner:
            out = fn(*args, **kwargs)
        return out, inner

    def start_state(self, key: Optional[jax.Array], run: Callable[[], object],
                    state: Optional[Mapping] = None,
                    counters: Optional[dict] = None) -> dict:
        """The state a lifted op starts from; in init, first runs the body once.

        During init, ``run()`` is called in an inner frame outside the JAX
        transform, so the params and state it creates are real values; they
        are committed to the outer frame. Returns ``state`` (default: the
        outer state) plus the state created.
        """
        outer = self.outer
        state = outer.state if state is None else state
        if not outer.is_init:
            return state
        with self.frame(outer.params, state, key, counters) as inner:
            run()
        self.commit(created(inner.params, outer.params), {}, inner.initial_state)
        return {**state, **inner.initial_state}

    def step(self, fn: Callable, args: tuple, params: Mapping, state: Mapping,
             key: Optional[jax.Array]) -> tuple:
        """One loop step of ``fn(*args)``; returns ``(out, state, carried key)``.

        The step draws from its own key split off the carried one, may not
        create params or state, and must keep every state entry's type.
        """
        key, step_key = stepped(key)
        out, inner = self.run(fn, args, {}, params, state, step_key)
        check_nothing_created(self, inner, params, state)
        check_state_kept(self, state, inner.state)
        return out, inner.state, key

    def commit(self, params: Mapping = (), state: Mapping = (),
               initial_state: Mapping = ()) -> None:
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
        for path, value in dict(initial_state).items():
            outer.initial_state.setdefault(path, value)
        if self.end is not None:
            outer.counters.update(self.end)


def created(inner: Mapping, before: Mapping = ()) -> collections.OrderedDict:
    """The entries of ``inner`` whose paths are not in ``before``, in creation order.

    An ``OrderedDict``, because JAX rebuilds a plain dict returned from a
    transformed function with sorted keys, while params and state must stay
    in creation order.
    """
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
        raise errors.MiniHaikuError(
            f"{lift.name} created {new} while tracing its body, but not when "
            "it first ran the body to create params and state. Fix: make the "
            "params and state the body creates independent of its inputs' "
            "values and of running_init().")


def stepped(key: Optional[jax.Array]) -> tuple:
    """Splits a carried loop key into ``(next carried key, this step's key)``."""
    if key is None:
        return None, None
    carried, step = jax.random.split(key)
    return carried, step


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


# Printed jaxpr -> a jitted evaluator of it, most recently used last.
_COMPILED: collections.OrderedDict = collections.OrderedDict()
_COMPILED_MAX = 256
_COMPILED_LOCK = threading.Lock()


def call(fn: Callable, *args):
    """Returns ``fn(*args)``, where ``fn`` applies one JAX transform to a fresh closure.

    Under an outer JAX transform (e.g. ``jax.jit(apply)``) this is just
    ``fn(*args)``. Eagerly, JAX would compile a fresh closure's ``lax.scan``
    (or cond, while, ...) again at every call, which costs far more than
    running it. So here it is traced to a jaxpr, and the executable compiled
    for the first jaxpr printing the same (same primitives, shapes and
    literals: the same computation, since every array it closes over is
    passed in as an argument) is reused. A jaxpr whose text does not pin
    down its computation (see ``_shareable``) is never shared.
    """
    if jax.config.jax_disable_jit or not _eager():
        return fn(*args)
    # Only arrays become inputs: Python values (a flag for an unmapped vmap
    # argument, say) must reach the function as they are, as without us.
    leaves, treedef = jax.tree_util.tree_flatten(args)
    where = [i for i, leaf in enumerate(leaves) if isinstance(leaf, (jax.Array, np.ndarray))]

    def traced(*arrays):
        full = list(leaves)
        for i, array in zip(where, arrays):
            full[i] = array
        return fn(*jax.tree_util.tree_unflatten(treedef, full))

    flat_args = [leaves[i] for i in where]
    closed, out_shape = jax.make_jaxpr(traced, return_shape=True)(*flat_args)
    key = str(closed.jaxpr)
    if not _shareable(closed, key):
        flat_out = jax_core.jaxpr_as_fun(closed)(*flat_args)
    else:
        with _COMPILED_LOCK:
            run = _COMPILED.pop(key, None) or jax.jit(functools.partial(_eval, closed.jaxpr))
            _COMPILED[key] = run
            if len(_COMPILED) > _COMPILED_MAX:
                _COMPILED.popitem(last=False)
        flat_out = run(closed.consts, flat_args)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), flat_out)


def _shareable(closed, text: str) -> bool:
    """Whether ``text`` alone pins down what ``closed`` computes.

    The top-level consts are passed in at every call, but constants of a
    nested closed jaxpr (e.g. of a ``jax.jit`` inside the body) print only as
    their type, and effects, callbacks or objects print as names or
    addresses: printing could not tell two such computations apart.
    """
    if closed.effects or "callback" in text or " at 0x" in text:
        return False
    return not _nested_consts(closed.jaxpr)


def _nested_consts(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    if sub.consts or _nested_consts(sub.jaxpr):
                        return True
                elif isinstance(sub, jax_core.Jaxpr) and _nested_consts(sub):
                    return True
    return False


def _eval(jaxpr, consts, flat_args):
    return jax.core.eval_jaxpr(jaxpr, consts, *flat_args)


def _eager() -> bool:
    """Whether JAX is evaluating eagerly right now (no transform is tracing)."""
    return type(jax_core.find_top_trace(())).__name__ == "EvalTrace"
