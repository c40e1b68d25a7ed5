"""Recurrent containers: ``DeepRNN`` (cores stacked) and ``ResetCore``."""

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeGuard

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn.recurrent import RNNCore


class _Core(Protocol):
    def __call__(self, inputs: Any, prev_state: Any) -> tuple[Any, Any]: ...

    def initial_state(self, batch_size: int | None) -> Any: ...


def _is_core(layer: object) -> TypeGuard[_Core]:
    return isinstance(layer, RNNCore) or (
        callable(getattr(layer, "initial_state", None)) and isinstance(layer, Module))


class DeepRNN(RNNCore):
    """Stacks cores (and plain functions) into one core, as Haiku's ``DeepRNN``.

    Each core gets the previous layer's output and its own part of the state;
    a plain function maps the previous output. The state is a tuple with one
    entry per core; the output is the last layer's.

    Example::

      def f(xs):
        core = mh.nn.DeepRNN([mh.nn.LSTM(8), jax.nn.relu, mh.nn.GRU(4)])
        return mh.nn.dynamic_unroll(core, xs, core.initial_state(xs.shape[1]))[0]
      params = mh.transform(f).init(0, jnp.ones([5, 2, 3]))
    """

    def __init__(self, layers: Sequence[Callable[..., Any]], name: str | None = None):
        """Builds the stack of ``layers`` (cores or functions), applied in order."""
        super().__init__(name=name)
        self.layers = tuple(layers)
        for i, layer in enumerate(self.layers):
            if not callable(layer):
                raise errors.InvalidArgumentError(
                    f"DeepRNN at '{self.module_path}': layer {i} is {layer!r}, not "
                    "callable. Fix: pass recurrent cores or functions.")

    def __call__(self, x, prev_state):
        """One step: ``(out, next_state)``, ``next_state`` a tuple per core."""
        cores = sum(map(_is_core, self.layers))
        if not isinstance(prev_state, (tuple, list)) or len(prev_state) != cores:
            raise errors.ModuleInputError(
                f"DeepRNN at '{self.module_path}' has {cores} cores but got a state "
                f"{type(prev_state).__name__} of length "
                f"{len(prev_state) if isinstance(prev_state, (tuple, list)) else '-'}. "
                "Fix: start from core.initial_state(batch_size).")
        next_states, i = [], 0
        for layer in self.layers:
            if _is_core(layer):
                x, state = layer(x, prev_state[i])
                next_states.append(state)
                i += 1
            else:
                x = layer(x)
        return x, tuple(next_states)

    def initial_state(self, batch_size: int | None) -> tuple:
        """A tuple of each core's ``initial_state(batch_size)``."""
        return tuple(layer.initial_state(batch_size) for layer in self.layers
                     if _is_core(layer))


class ResetCore(RNNCore):
    """Wraps a core to reset its state to ``initial_state`` where ``should_reset``.

    Called with ``((x, should_reset), prev_state)``: ``should_reset`` is a bool
    per batch entry (``[B]``), or a tree matching the state whose leaves are
    prefixes of the state leaves' shapes. As Haiku's ``ResetCore``.

    Example::

      def f(xs, resets):  # xs [T, B, F], resets [T, B] bool
        core = mh.nn.ResetCore(mh.nn.LSTM(8))
        return mh.nn.dynamic_unroll(core, (xs, resets), core.initial_state(xs.shape[1]))
      params = mh.transform(f).init(0, jnp.ones([5, 2, 3]), jnp.zeros([5, 2], bool))
    """

    def __init__(self, core: RNNCore, name: str | None = None):
        """Wraps ``core`` (a module with ``__call__`` and ``initial_state``)."""
        super().__init__(name=name)
        if not callable(getattr(core, "initial_state", None)):
            raise errors.InvalidArgumentError(
                f"ResetCore at '{self.module_path}' got {core!r}, which has no "
                "initial_state. Fix: wrap a recurrent core such as mh.nn.LSTM(8).")
        self.core = core

    def __call__(self, inputs, prev_state):
        """One step of the core after resetting: ``(out, next_state)``."""
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise errors.ModuleInputError(
                f"ResetCore at '{self.module_path}' needs inputs (x, should_reset); "
                f"got {type(inputs).__name__}. Fix: unroll over (xs, resets).")
        x, should_reset = inputs
        state = jax.tree_util.tree_map(jnp.asarray, prev_state)
        leaves = jax.tree_util.tree_leaves(state)
        batch = None
        if leaves and self._is_batched(leaves):
            batch = jax.tree_util.tree_leaves(x)[0].shape[0]
        initial = jax.tree_util.tree_map(lambda s, i: jnp.asarray(i, s.dtype), state,
                                         self.core.initial_state(batch))
        if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(should_reset)):
            should_reset = jax.tree_util.tree_map(lambda _: should_reset, state)
        state = jax.tree_util.tree_map(self._reset, should_reset, initial, state)
        return self.core(x, state)

    def _is_batched(self, leaves: Any) -> bool:
        one = jax.tree_util.tree_leaves(self.core.initial_state(1))
        return all(jnp.shape(a)[1:] == s.shape[1:] for a, s in zip(one, leaves, strict=True))

    def _reset(self, should_reset, initial, state):
        r = jnp.asarray(should_reset)
        if r.shape != state.shape[:r.ndim]:
            raise errors.ModuleInputError(
                f"ResetCore at '{self.module_path}' got should_reset of shape {r.shape} "
                f"for a state leaf of shape {state.shape}; it must be a prefix of that "
                "shape (e.g. [batch]). Fix: pass one bool per batch entry.")
        r = r.reshape(r.shape + (1,) * (state.ndim - r.ndim))
        return jnp.where(r, initial, state)

    def initial_state(self, batch_size: int | None) -> Any:
        """The wrapped core's initial state."""
        return self.core.initial_state(batch_size)
