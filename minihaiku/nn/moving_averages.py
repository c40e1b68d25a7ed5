"""Moving averages kept in state: ``ExponentialMovingAverage``, ``EMAParamsTree``."""

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import state as state_lib
from minihaiku.module import Module


def _check_decay(where: str, decay: float, zero_debias: bool, warmup_length: int) -> None:
    if not 0 <= decay < 1:
        raise errors.InvalidArgumentError(
            f"{where} got decay={decay!r}; it must be in [0, 1). Fix: pass e.g. "
            "decay=0.99 (close to 1: slow decay).")
    if not isinstance(warmup_length, int) or warmup_length < 0:
        raise errors.InvalidArgumentError(
            f"{where} got warmup_length={warmup_length!r}; it must be an int >= 0.")
    if warmup_length and zero_debias:
        raise errors.InvalidArgumentError(
            f"{where} got warmup_length={warmup_length} with zero_debias=True; "
            "zero-debiasing makes no sense when the average is warmed up to the "
            "input. Fix: pass zero_debias=False.")


# Called from the module's methods; state belongs to the module, so
# `average` and `hidden` are the same entries whichever method touches them.
def _read_average(self: "ExponentialMovingAverage") -> jax.Array:
    return state_lib.get_state("average")


def _create_zeros(self: "ExponentialMovingAverage", shape: Any, dtype: Any) -> None:
    state_lib.get_state("hidden", shape, dtype, init=jnp.zeros)
    state_lib.get_state("average", shape, dtype, init=jnp.zeros)


class ExponentialMovingAverage(Module):
    """An exponential moving average of the values it is called with, in state.

    Each call computes ``hidden = decay * hidden + (1 - decay) * value`` and,
    with ``zero_debias``, ``average = hidden / (1 - decay ** counter)`` (Adam's
    debiasing), as dm-haiku's ``hk.ExponentialMovingAverage``. State, under
    ``<module path>/__call__/``: ``counter`` (int32, starting at
    ``-warmup_length``), ``hidden`` and ``average`` (the value's shape and
    dtype). ``counter`` and ``hidden`` start at their initial values
    (``-warmup_length``, zeros); ``average`` has no initial value of its own:
    init stores the first average computed, i.e. the first value. During
    warm-up (``counter <= 0`` after the increment) the decay is 0, so the
    average is the latest value. Needs ``mh.transform_with_state``.

    Example::

      f = mh.transform_with_state(
          lambda x: mh.nn.ExponentialMovingAverage(0.9)(x))
      _, state = f.init(None, 1.0)
      avg, state = f.apply({}, state, None, 3.0)  # 3.0: debiased first step
    """

    def __init__(self, decay: float, zero_debias: bool = True, warmup_length: int = 0,
                 name: str | None = None):
        """Builds the average.

        Args:
          decay: in ``[0, 1)``; close to 1 decays slowly.
          zero_debias: divide by ``1 - decay ** counter``.
          warmup_length: the first ``warmup_length`` calls replace the
            average by the value (needs ``zero_debias=False``).
          name: module name, default ``ExponentialMovingAverage``.
        """
        super().__init__(name=name)
        _check_decay(f"ExponentialMovingAverage at '{self.module_path}'", decay,
                     zero_debias, warmup_length)
        self.decay = decay
        self.zero_debias = zero_debias
        self.warmup_length = warmup_length

    def initialize(self, shape: Any, dtype: Any = jnp.float32) -> None:
        """Creates ``hidden`` and ``average`` as zeros if they do not exist yet."""
        _create_zeros(self, tuple(shape), dtype)

    def __call__(self, value: Any, update_stats: bool = True) -> jax.Array:
        """Updates the average with ``value`` and returns the new average.

        Args:
          value: an array (or number).
          update_stats: store the new ``counter``, ``hidden`` and ``average``;
            with ``False`` the state is left as it was.

        Returns:
          The new average, of ``value``'s shape and dtype.
        """
        value = jnp.asarray(value)
        counter = state_lib.get_state(
            "counter", (), jnp.int32,
            init=lambda s, d: jnp.full(s, -self.warmup_length, d)) + 1
        decay = jnp.asarray(self.decay, value.dtype)
        if self.warmup_length > 0:
            decay = jnp.where(counter <= 0, jnp.zeros_like(decay), decay)
        one = jnp.ones([], value.dtype)
        hidden = state_lib.get_state("hidden", value.shape, value.dtype, init=jnp.zeros)
        hidden = hidden * decay + value * (one - decay)
        average = hidden
        if self.zero_debias:
            average = average / (one - jnp.power(decay, counter))
        if update_stats:
            state_lib.set_state("counter", counter)
            state_lib.set_state("hidden", hidden)
            state_lib.set_state("average", average)
        return average

    @property
    def average(self) -> jax.Array:
        """The stored average (state ``average``); it must exist."""
        return _read_average(self)


class EMAParamsTree(Module):
    """An ``ExponentialMovingAverage`` of every leaf of a params dict.

    Call it with params (a flat ``{path: array}`` dict, or nested mappings as
    dm-haiku's) and it returns the same structure holding each leaf's moving
    average; run the model with those to evaluate with averaged weights. Leaf
    ``k`` (nested keys joined with ``/``) gets an average named ``k`` with
    ``/`` replaced by ``__`` and ``~`` by ``_tilde_``, as in dm-haiku's
    ``hk.EMAParamsTree``; leaves whose key matches ``ignore_regex``
    (``re.match``) are returned unchanged.

    Example::

      net = mh.transform(lambda x: mh.nn.Linear(2)(x))
      params = net.init(0, jnp.ones([1, 3]))
      ema = mh.transform_with_state(lambda p: mh.nn.EMAParamsTree(0.99)(p))
      _, ema_state = ema.init(None, params)
      ema_params, ema_state = ema.apply({}, ema_state, None, params)
    """

    def __init__(self, decay: float, zero_debias: bool = True, warmup_length: int = 0,
                 ignore_regex: str = "", name: str | None = None):
        """Builds the averages' owner.

        Args:
          decay: in ``[0, 1)``, as ``ExponentialMovingAverage``.
          zero_debias: as ``ExponentialMovingAverage``.
          warmup_length: as ``ExponentialMovingAverage``.
          ignore_regex: leaves whose key matches are not averaged ("": none).
          name: module name, default ``EMAParamsTree``.
        """
        super().__init__(name=name)
        _check_decay(f"EMAParamsTree at '{self.module_path}'", decay, zero_debias,
                     warmup_length)
        self.decay = decay
        self.zero_debias = zero_debias
        self.warmup_length = warmup_length
        self.ignore_regex = ignore_regex

    def __call__(self, tree: Mapping[str, Any], update_stats: bool = True) -> dict:
        """Returns ``tree`` with every (not ignored) leaf replaced by its average."""
        if not isinstance(tree, Mapping):
            raise errors.ModuleInputError(
                f"EMAParamsTree at '{self.module_path}' got a {type(tree).__name__}; "
                "it takes a params dict ({path: array}, or nested dicts). Fix: pass "
                "the params init returned.")
        return self._average(tree, "", update_stats)

    def _average(self, tree: Mapping[str, Any], prefix: str, update_stats: bool) -> dict:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping):
                out[k] = self._average(v, key + "/", update_stats)
            elif self.ignore_regex and re.match(self.ignore_regex, key):
                out[k] = v
            else:
                name = key.replace("/", "__").replace("~", "_tilde_")
                out[k] = ExponentialMovingAverage(
                    self.decay, self.zero_debias, self.warmup_length, name=name)(
                        v, update_stats=update_stats)
        return out
