"""``get_state`` / ``set_state``: values that ``apply`` returns updated."""

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import _hooks
from minihaiku import params as params_lib

StateInitializer = Callable[[Sequence[int], Any], jax.Array]


def _state_frame(caller: str, name: str):
    frame = frame_lib.current_frame(caller)
    path = f"{frame.scope}/{name}"
    frame_lib.check_trace(frame, caller, path)
    if not frame.allow_state:
        raise errors.StateNotAllowedError(
            f"{caller} for '{path}' was called under mh.transform, which has "
            "no state. Fix: use mh.transform_with_state(f); its init returns "
            "(params, state) and its apply takes and returns state.")
    return frame, path


def _missing(path: str, shape, frame) -> errors.MissingParamError:
    return errors.MissingParamError(params_lib._missing_message(
        "state", path, shape, frame.state,
        "State can only be created in init: pass init's state to apply."))


def get_state(name: str, shape: Optional[Sequence[int]] = None,
              dtype: Any = jnp.float32,
              init: Optional[StateInitializer] = None) -> jax.Array:
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
    if shape is not None:
        shape = tuple(shape)
    value = frame.state.get(path)
    if value is None:
        if not frame.is_init:
            raise _missing(path, shape, frame)
        if init is None or shape is None:
            raise errors.MiniHaikuError(
                f"State '{path}' does not exist yet and get_state has no "
                f"{'init' if init is None else 'shape'} to create it. Fix: "
                "call e.g. mh.get_state(name, shape, dtype, init=jnp.zeros), "
                "or mh.set_state(name, value) first.")
        params_lib.check_name("State", name, f"path '{path}'")
        value = init(shape, dtype)
        params_lib.check_value("The initializer of state", path, value, shape,
                               dtype, "Fix the initializer.")
        frame.state[path] = value
        frame.initial_state[path] = value
        return value
    if shape is not None:
        params_lib.check_value("State", path, value, shape, dtype,
                               "Request the shape and dtype it was made with.")
    return value


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
        value = jnp.asarray(value)
    old = frame.state.get(path)
    if old is None:
        if not frame.is_init:
            raise _missing(path, value.shape, frame)
        params_lib.check_name("State", name, f"path '{path}'")
        frame.initial_state[path] = value
    else:
        # Checked in init too, so a change apply would refuse fails at once.
        params_lib.check_value(
            "State", path, value, old.shape, old.dtype,
            f"set_state must keep the stored shape {tuple(old.shape)} and dtype "
            f"{old.dtype}; cast with .astype or reshape.")
    frame.state[path] = value
