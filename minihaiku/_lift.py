"""``lift``: another transform's params (and state), living inside this one's.

``mh.lift(inner.init, name)(*args)`` runs ``inner.init(*args)`` once, during
the outer ``init``, and stores its params under ``<scope>/<name>/...`` (the
inner path ``~/Linear_0/__call__/w`` becomes ``<scope>/<name>/Linear_0/
__call__/w``), with the logical axes the inner init declared. In the outer
``apply`` it runs nothing and reads them back. Either way it returns the
inner params, ready for ``inner.apply``: a separately built (or pretrained)
model becomes part of a bigger one, and its params are trained, saved and
sharded with the rest. Without a name, lifts are numbered like modules
(``lifted_0``, ``lifted_1``), so two never share params by accident.
"""

from collections.abc import Callable, Mapping
from typing import Any

from minihaiku import checks, errors
from minihaiku import frame as frame_lib
from minihaiku import state as state_lib


def lift(init_fn: Callable[..., Mapping], name: str | None = None) -> Callable[..., dict]:
    """Registers the params made by ``init_fn`` under ``<scope>/<name>``.

    Args:
      init_fn: the ``init`` of another ``mh.transform`` (returns a params dict).
      name: the path segment the inner params live under; default
        ``lifted_<n>``, numbered per scope like modules.

    Returns:
      A function taking ``init_fn``'s arguments and returning the inner params
      (created in the outer ``init``, read back in the outer ``apply``).
      Calling it again reuses them, as a module called twice does.

    Example::

      inner = mh.transform(lambda x: mh.nn.Linear(3)(x))

      def f(x):
        params = mh.lift(inner.init, name="body")(mh.next_rng_key(), x)
        return inner.apply(params, None, x)      # '~/body/Linear_0/__call__/w'

      params = mh.transform(f).init(0, jnp.ones((1, 2)))
    """
    prefix = _prefix("mh.lift", name)

    def lifted(*args: Any, **kwargs: Any) -> dict:
        frame = frame_lib.current_frame("mh.lift")
        existing = _read(frame.params, prefix + "/")
        if existing or not frame.is_init:
            return existing
        inner = _run_init("mh.lift", frame, prefix, init_fn, args, kwargs, False)
        return dict(inner)

    return lifted


class LiftWithStateUpdater:
    """Writes the inner state back after ``inner.apply`` (from :func:`lift_with_state`)."""

    def __init__(self, prefix: str):
        self._prefix = prefix

    def update(self, state: Mapping) -> None:
        """Stores ``state`` (the inner apply's new state) in the outer state."""
        for path, value in state.items():
            _set(self._prefix + path[1:], value)


def lift_with_state(init_fn: Callable[..., tuple],
                    name: str | None = None) -> tuple[Callable[..., tuple],
                                                      LiftWithStateUpdater]:
    """:func:`lift` for the ``init`` of ``mh.transform_with_state``.

    Returns ``(lifted, updater)``: ``lifted(*args) -> (params, state)`` (made
    in the outer init, read back in apply), and ``updater.update(state)``
    to store the state ``inner.apply`` returns. Use it under
    ``mh.transform_with_state``.

    Example::

      inner = mh.transform_with_state(lambda x: mh.nn.BatchNorm(0.9)(x, True))

      def f(x):
        lifted, updater = mh.lift_with_state(inner.init, name="bn")
        params, state = lifted(None, x)
        out, state = inner.apply(params, state, None, x)
        updater.update(state)
        return out

      params, state = mh.transform_with_state(f).init(0, jnp.ones((2, 3)))
    """
    prefix = _prefix("mh.lift_with_state", name)

    def lifted(*args: Any, **kwargs: Any) -> tuple:
        frame = frame_lib.current_frame("mh.lift_with_state")
        params = _read(frame.params, prefix + "/")
        state = _read(frame.state, prefix + "/")
        if params or state or not frame.is_init:
            return params, state
        inner = _run_init("mh.lift_with_state", frame, prefix, init_fn, args, kwargs, True)
        return dict(inner[0]), dict(inner[1])

    return lifted, LiftWithStateUpdater(prefix)


def _prefix(caller: str, name: str | None) -> str:
    frame = frame_lib.current_frame(caller)
    if name is None:
        n = frame.counters.get("lifted", 0)
        frame.counters["lifted"] = n + 1
        name = f"lifted_{n}"
    else:
        checks.check_name(caller, name, f"in '{frame.scope}'")
    return f"{frame.scope}/{name}"


def _run_init(caller: str, frame: frame_lib.Frame, prefix: str, init_fn: Callable,
              args: tuple, kwargs: dict, with_state: bool) -> Any:
    frame_lib.check_trace(frame, caller, prefix)
    with frame_lib.observing() as runs:
        inner = init_fn(*args, **kwargs)
    params, state = inner if with_state and isinstance(inner, tuple) else (inner, {})
    if not all(_is_paths(d) for d in (params, state)) or (
            with_state and not isinstance(inner, tuple)):
        want = ("the (params, state) of mh.transform_with_state(...).init" if with_state
                else "the params dict of mh.transform(...).init")
        raise errors.InvalidArgumentError(
            f"{caller}(...) at '{prefix}': init_fn must return {want}, got "
            f"{type(inner).__name__}. Fix: pass inner.init of "
            f"{'mh.transform_with_state' if with_state else 'mh.transform'}"
            f"{'' if with_state else ' (for state, use mh.lift_with_state)'}.")
    for path, value in params.items():
        frame.params[prefix + path[1:]] = value
    for path, value in state.items():
        frame.state[prefix + path[1:]] = frame.initial_state[prefix + path[1:]] = value
    for run in runs:  # The inner run's logical axes, under their outer paths.
        for path, axes in run.axes.items():
            frame.axes[prefix + path[1:]] = axes
    return inner


def _is_paths(d: Any) -> bool:
    return isinstance(d, Mapping) and all(isinstance(p, str) and p.startswith("~/") for p in d)


def _set(path: str, value: Any) -> None:
    frame = frame_lib.current_frame("LiftWithStateUpdater.update")
    if not frame.allow_state:
        raise errors.StateNotAllowedError(
            f"updater.update for '{path}' was called under mh.transform, which has no "
            "state. Fix: use mh.transform_with_state for the outer function.")
    old = frame.state.get(path)
    if old is None:
        raise errors.MissingStateError(
            f"updater.update: '{path}' is not a state entry the lifted init made. Fix: "
            "pass the state that inner.apply returned for the params and state "
            "`lifted(...)` gave.")
    state_lib.check_update(path, old, value)
    frame.state[path] = value


def _read(params: Mapping, prefix: str) -> dict:
    """The entries under ``prefix`` with their inner paths (``~/...``)."""
    cut = len(prefix)
    return {"~/" + p[cut:]: v for p, v in params.items() if p.startswith(prefix)}
