"""``get_state`` / ``set_state``: values that ``apply`` returns updated."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import _hooks, checks, errors
from minihaiku import frame as frame_lib

StateInitializer = Callable[[Sequence[int], Any], jax.Array]


def _state_frame(caller: str, name: str) -> tuple[frame_lib.Frame, str]:
    frame = frame_lib.current_frame(caller)
    path = f"{frame.scope}/{name}"
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
    if _hooks.PARAMS and not _hooks.LOCAL.bypass:
        return _hooks.get_state(get_state, name, shape, dtype, init)
    frame, path = _state_frame("mh.get_state", name)
    if shape is not None and type(shape) is not tuple:
        shape = checks.as_shape(shape, "State", path)
    value = frame.state.get(path)
    if value is None:
        if not frame.is_init:
            raise _missing(path, shape, frame)
        if init is None or shape is None:
            raise errors.InvalidArgumentError(
                f"State '{path}' does not exist yet and get_state has no "
                f"{'init' if init is None else 'shape'} to create it. Fix: "
                "call e.g. mh.get_state(name, shape, dtype, init=jnp.zeros), "
                "or mh.set_state(name, value) first.")
        checks.check_name("State", name, f"path '{path}'")
        value = _create(path, init, shape, dtype)
        checks.check_value("The initializer of state", path, value, shape,
                           dtype, "Fix the initializer to return an array of "
                           "the shape and dtype asked.")
        frame.state[path] = value
        frame.initial_state[path] = value
        return value
    if shape is not None or not hasattr(value, "shape"):
        checks.check_value("State", path, value, shape, dtype,
                           "Request the shape and dtype it was made with.")
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
    if _hooks.PARAMS and not _hooks.LOCAL.bypass:
        return _hooks.set_state(set_state, name, value)
    frame, path = _state_frame("mh.set_state", name)
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
        if not hasattr(old, "shape"):
            checks.check_value("State", path, old, None, None, "")
        # Checked in init too, so a change apply would refuse fails at once.
        checks.check_value(
            "State", path, value, old.shape, old.dtype,
            f"set_state must keep the stored shape {tuple(old.shape)} and dtype "
            f"{old.dtype}; cast with .astype or reshape.")
    frame.state[path] = value
