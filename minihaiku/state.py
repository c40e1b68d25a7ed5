"""``get_state`` / ``set_state``: values that ``apply`` returns updated.

A state entry belongs to the module whose method touches it, as in Haiku:
its path is ``<module path>/<name>`` (``~/Codebook_0/v``), the same from every
method of that module, so one method (or property) may read what another
writes. Outside any module it is ``<scope>/<name>``. Reads and writes go
through the same pipeline as params (:mod:`minihaiku.interceptors`).
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import checks, errors
from minihaiku import frame as frame_lib
from minihaiku import interceptors as hooks_lib
from minihaiku.params import checked_creation

StateInitializer = Callable[[Sequence[int], Any], jax.Array]


def _state_frame(caller: str, name: str) -> tuple[frame_lib.Frame, str]:
    frame = frame_lib.current_frame(caller)
    path = f"{frame.owner}/{name}"
    frame_lib.check_trace(frame, caller, path)
    if not frame.allow_state:
        raise errors.StateNotAllowedError(
            f"{caller} for '{path}' was called under mh.transform, which has "
            "no state. Fix: use mh.transform_with_state(f); its init returns "
            "(params, state) and its apply takes and returns state.")
    return frame, path


def _missing(path: str, shape: Any, frame: frame_lib.Frame) -> errors.MissingStateError:
    return errors.MissingStateError(checks.missing_message(
        "state", path, shape, frame.state,
        "State can only be created in init: pass init's state to apply."))


def get_state(name: str, shape: Sequence[int] | None = None,
              dtype: Any = jnp.float32,
              init: StateInitializer | None = None) -> jax.Array:
    """Reads the state entry ``name``, creating it in ``init`` if needed.

    The initializer is deterministic, ``init(shape, dtype)`` (e.g.
    ``jnp.zeros``). Shape and dtype are checked against the stored value when
    ``shape`` is given.

    Example::

      def f():
        count = mh.get_state("count", (), jnp.int32, init=jnp.zeros)
        mh.set_state("count", count + 1)
        return count
    """
    frame, path = _state_frame("mh.get_state", name)
    if shape is not None and type(shape) is not tuple:
        shape = checks.as_shape(shape, "State", path)
    hooks = frame.hooks
    value = frame.state.get(path)
    if value is None:
        value = _created(frame, path, name, shape, dtype, init, hooks)
    elif shape is not None or not hasattr(value, "shape"):
        checks.check_value("State", path, value, shape, dtype,
                           "Request the shape and dtype it was made with.")
    if hooks is not None and hooks.state_getters:
        return hooks_lib.get(hooks.state_getters, value, hooks.context(path, name))
    return value


def _created(frame: frame_lib.Frame, path: str, name: str, shape: tuple | None,
             dtype: Any, init: StateInitializer | None,
             hooks: hooks_lib.Hooks | None) -> jax.Array:
    """Creates, checks and stores a missing state entry (init only)."""
    if not frame.is_init:
        raise _missing(path, shape, frame)
    if init is None or shape is None:
        raise errors.InvalidArgumentError(
            f"State '{path}' does not exist yet and get_state has no "
            f"{'init' if init is None else 'shape'} to create it. Fix: "
            "call e.g. mh.get_state(name, shape, dtype, init=jnp.zeros), "
            "or mh.set_state(name, value) first.")
    checks.check_name("State", name, f"path '{path}'")

    def create(shape, dtype, init):
        value = _create(path, init, shape, dtype)
        checks.check_value("The initializer of state", path, value, shape,
                           dtype, "Fix the initializer to return an array of "
                           "the shape and dtype asked.")
        return value

    if hooks is not None and hooks.state_creators:
        value = hooks_lib.chain(hooks.state_creators, hooks.context(path, name),
                                create)(shape, dtype, init)
        checked_creation("state", path, value, shape, dtype)
    else:
        value = create(shape, dtype, init)
    frame.state[path] = value
    frame.initial_state[path] = value
    return value


def _create(path: str, init: StateInitializer, shape: tuple, dtype: Any) -> jax.Array:
    try:
        return init(shape, dtype)
    except Exception as e:
        mixed_up = checks.initializer_error("state", path, init, e)
        if mixed_up is not None:
            raise mixed_up from e
        raise


def set_state(name: str, value: Any) -> None:
    """Sets the state entry ``name``; ``apply`` returns it updated.

    During ``init``, setting an entry that does not exist yet creates it with
    ``value`` as its initial value. In ``apply`` the entry must exist and keep
    its shape and dtype.
    """
    frame, path = _state_frame("mh.set_state", name)
    hooks = frame.hooks
    if hooks is not None and hooks.setters:
        hooks_lib.chain(hooks.setters, hooks.context(path, name),
                        lambda value: _write(frame, path, name, value))(value)
    else:
        _write(frame, path, name, value)


def _write(frame: frame_lib.Frame, path: str, name: str, value: Any) -> None:
    if not hasattr(value, "shape"):
        try:
            value = jnp.asarray(value)
        except TypeError as e:
            raise errors.InvalidArgumentError(
                f"mh.set_state for '{path}' got {type(value).__name__} "
                f"{value!r:.60}, which is not an array. Fix: set an array "
                "(or a number or nested list of numbers).") from e
    old = frame.state.get(path)
    if old is None:
        if not frame.is_init:
            raise _missing(path, value.shape, frame)
        checks.check_name("State", name, f"path '{path}'")
        frame.initial_state[path] = value
    else:
        # Checked in init too, so a change apply would refuse fails at once.
        check_update(path, old, value)
    frame.state[path] = value


def check_update(path: str, old: Any, value: Any) -> None:
    """Refuses a new value for state ``path`` unless it keeps ``old``'s shape and dtype."""
    if not hasattr(old, "shape"):
        checks.check_value("State", path, old, None, None, "")
    checks.check_value(
        "State", path, value, old.shape, old.dtype,
        f"set_state must keep the stored shape {tuple(old.shape)} and dtype "
        f"{old.dtype}; cast with .astype or reshape.")
