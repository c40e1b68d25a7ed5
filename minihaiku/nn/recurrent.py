"""Recurrent cores: ``VanillaRNN``, ``LSTM`` and ``GRU``.

A core maps ``(x, prev_state)`` to ``(out, next_state)`` for one time step;
``initial_state(batch_size)`` gives the zero state. Each computes exactly what
Haiku's core of the same name computes given the same weights.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nn.linear import Linear
from minihaiku.params import Initializer

# Haiku's GRU default (VarianceScaling(): scale 1, fan-in, truncated normal).
_variance_scaling = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


class LSTMState(NamedTuple):
    """The state of an :class:`LSTM`: ``hidden`` and ``cell``, each ``[..., hidden_size]``."""
    hidden: jax.Array
    cell: jax.Array


class RNNCore(Module):
    """Base class of recurrent cores: ``__call__(x, prev_state)`` and ``initial_state``."""

    hidden_size: int

    def __call__(self, x, prev_state):
        """Returns ``(out, next_state)`` for one time step."""
        raise NotImplementedError

    def initial_state(self, batch_size: int | None) -> Any:
        """The zero state, ``[batch_size, hidden_size]`` (``[hidden_size]`` if ``None``)."""
        shape = (self.hidden_size,) if batch_size is None else (batch_size, self.hidden_size)
        return jnp.zeros(shape)

    def _check(self, x: jax.Array, state: Any) -> jax.Array:
        # Catches wrong ranks and a state made for another core (or batch) up
        # front, where Haiku would fail deep inside a matmul or a concatenate.
        x = jnp.asarray(x)
        name = type(self).__name__
        if x.ndim not in (1, 2):
            raise errors.ModuleInputError(
                f"{name} at '{self.module_path}' got an input of shape {x.shape}; "
                "it needs [batch, features] or [features] (one time step). Fix: "
                "unroll over time with mh.nn.dynamic_unroll / static_unroll, and "
                "flatten other axes first.")
        want = x.shape[:-1] + (self.hidden_size,)
        shape = getattr(state, "shape", None)
        if shape != want:
            raise errors.ModuleInputError(
                f"{name} at '{self.module_path}' (hidden_size={self.hidden_size}) "
                f"got a state of shape {shape} for an input of shape {x.shape}; "
                f"it needs shape {want}. Fix: start from "
                f"core.initial_state(batch_size) of this core.")
        return x


class VanillaRNN(RNNCore):
    """``h = relu(Linear(x) + Linear(prev_h))``; the output is ``h``.

    Params: ``<path>/__call__/Linear_0`` (input to hidden) and ``Linear_1``
    (hidden to hidden, with a bias iff ``double_bias``), as in Haiku.

    Example::

      def step(x):
        core = mh.nn.VanillaRNN(8)
        return core(x, core.initial_state(x.shape[0]))

      x = jnp.ones((2, 3))
      f = mh.transform(step)
      out, h = f.apply(f.init(0, x), None, x)
    """

    def __init__(self, hidden_size: int, double_bias: bool = True,
                 name: str | None = None):
        """Builds the core (``double_bias``: give the hidden-to-hidden layer a bias too)."""
        super().__init__(name=name)
        self.hidden_size = hidden_size
        self.double_bias = double_bias

    def __call__(self, x: jax.Array, prev_state: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: ``(h, h)``."""
        x = self._check(x, prev_state)
        h = jax.nn.relu(Linear(self.hidden_size)(x)
                        + Linear(self.hidden_size, self.double_bias)(prev_state))
        return h, h


class LSTM(RNNCore):
    """Long short-term memory, as Haiku's ``LSTM``.

    One ``Linear(4 * hidden_size)`` (``<path>/__call__/Linear_0``) over
    ``concat([x, prev.hidden])``, split into gates ``i, g, f, o``::

      c = sigmoid(f + 1) * prev.cell + sigmoid(i) * tanh(g)
      h = sigmoid(o) * tanh(c)

    Returns ``(h, LSTMState(h, c))``.

    Example::

      def step(x):
        core = mh.nn.LSTM(8)
        return core(x, core.initial_state(x.shape[0]))

      x = jnp.ones((2, 3))
      f = mh.transform(step)
      out, state = f.apply(f.init(0, x), None, x)
    """

    def __init__(self, hidden_size: int, name: str | None = None):
        """Builds the core."""
        super().__init__(name=name)
        self.hidden_size = hidden_size

    def __call__(self, x: jax.Array, prev_state: LSTMState) -> tuple[jax.Array, LSTMState]:
        """One step: ``(h, LSTMState(h, c))``."""
        if not isinstance(prev_state, tuple) or len(prev_state) != 2:
            raise errors.ModuleInputError(
                f"LSTM at '{self.module_path}' needs prev_state = "
                f"LSTMState(hidden, cell), got {type(prev_state).__name__}. "
                "Fix: start from core.initial_state(batch_size).")
        hidden, cell = prev_state
        x = self._check(x, hidden)
        self._check(x, cell)
        gates = Linear(4 * self.hidden_size)(jnp.concatenate([x, hidden], axis=-1))
        i, g, f, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f + 1) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, LSTMState(h, c)

    def initial_state(self, batch_size: int | None) -> LSTMState:
        """Zero ``LSTMState``, each part ``[batch_size, hidden_size]``."""
        zeros = RNNCore.initial_state(self, batch_size)
        return LSTMState(zeros, zeros)


class GRU(RNNCore):
    """Gated recurrent unit, as Haiku's ``GRU``.

    Params ``w_i`` ``[in, 3h]``, ``w_h`` ``[h, 3h]``, ``b`` ``[3h]`` (columns
    in Haiku's order: update ``z``, reset ``r``, candidate ``a``)::

      z, r = sigmoid(x @ w_i[:, :2h] + h @ w_h[:, :2h] + b[:2h])
      a = tanh(x @ w_i[:, 2h:] + (r * h) @ w_h[:, 2h:] + b[2h:])
      h' = (1 - z) * h + z * a

    Weights default to variance scaling (fan-in, truncated normal), ``b`` to
    zeros. Returns ``(h', h')``.

    Example::

      def step(x):
        core = mh.nn.GRU(8)
        return core(x, core.initial_state(x.shape[0]))

      x = jnp.ones((2, 3))
      f = mh.transform(step)
      out, h = f.apply(f.init(0, x), None, x)
    """

    def __init__(self, hidden_size: int, w_i_init: Initializer | None = None,
                 w_h_init: Initializer | None = None,
                 b_init: Initializer | None = None, name: str | None = None):
        """Builds the core."""
        super().__init__(name=name)
        self.hidden_size = hidden_size
        self.w_i_init = w_i_init or _variance_scaling
        self.w_h_init = w_h_init or _variance_scaling
        self.b_init = b_init or jax.nn.initializers.zeros

    def __call__(self, x: jax.Array, prev_state: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: ``(h', h')``."""
        x = self._check(x, prev_state)
        h, dtype, split = self.hidden_size, x.dtype, 2 * self.hidden_size
        w_i = params_lib.get_param("w_i", (x.shape[-1], 3 * h), dtype, self.w_i_init)
        w_h = params_lib.get_param("w_h", (h, 3 * h), dtype, self.w_h_init)
        b = params_lib.get_param("b", (3 * h,), dtype, self.b_init)
        x_zr, x_a = jnp.split(x @ w_i, [split], axis=-1)
        z, r = jnp.split(jax.nn.sigmoid(x_zr + prev_state @ w_h[:, :split] + b[:split]),
                         2, axis=-1)
        a = jnp.tanh(x_a + (r * prev_state) @ w_h[:, split:] + b[split:])
        next_state = (1 - z) * prev_state + z * a
        return next_state, next_state

