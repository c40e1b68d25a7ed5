"""``BatchNorm``: normalise over the batch, keeping moving statistics in state."""

from typing import Optional

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import state as state_lib
from minihaiku.module import Module
from minihaiku.nn import _normalize
from minihaiku.params import Initializer


class BatchNorm(Module):
    """Batch normalisation over all axes but the last (channels-last).

    In training it normalises with the batch mean and variance and updates
    the moving statistics; otherwise it normalises with the moving ones. The
    moving statistics are Haiku's ``ExponentialMovingAverage`` with
    zero-debiasing: ``hidden = decay * hidden + (1 - decay) * value``, then
    ``moving = hidden / (1 - decay ** counter)``, so the numbers match Haiku's
    ``BatchNorm``. State, under ``<module path>/__call__/``: ``counter``
    (int32), ``mean_hidden``, ``var_hidden``, ``moving_mean``, ``moving_var``
    (shape ``[channels]``). Params ``scale`` (ones) and ``offset`` (zeros) have
    shape ``[channels]``. Needs ``mh.transform_with_state``.

    Example::

      f = mh.transform_with_state(lambda x, t: mh.nn.BatchNorm(0.9)(x, t))
      params, state = f.init(0, x, True)
      y, state = f.apply(params, state, None, x, True)
    """

    def __init__(self, decay_rate: float, eps: float = 1e-5,
                 create_scale: bool = True, create_offset: bool = True,
                 scale_init: Optional[Initializer] = None,
                 offset_init: Optional[Initializer] = None,
                 name: Optional[str] = None):
        """Builds the layer.

        Args:
          decay_rate: decay of the moving statistics, in ``[0, 1)``.
          eps: added to the variance.
          create_scale: learn a per-channel ``scale``.
          create_offset: learn a per-channel ``offset``.
          scale_init: ``init(key, shape, dtype)`` of ``scale`` (default ones).
          offset_init: ``init(key, shape, dtype)`` of ``offset`` (default zeros).
          name: module name, default ``BatchNorm``.
        """
        super().__init__(name=name)
        if not 0 <= decay_rate < 1:
            raise errors.MiniHaikuError(
                f"BatchNorm at '{self.module_path}' got decay_rate={decay_rate!r}; "
                "it must be in [0, 1). Fix: pass e.g. decay_rate=0.9.")
        self.decay_rate = decay_rate
        self.eps = eps
        self.create_scale = create_scale
        self.create_offset = create_offset
        self.scale_init, self.offset_init = _normalize.scale_offset_inits(
            f"BatchNorm at '{self.module_path}'", create_scale, create_offset,
            scale_init, offset_init)

    def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
        """Normalises ``x`` of shape ``[batch, ..., channels]``.

        Args:
          x: the input, rank at least 2.
          is_training: a Python bool: use (and update) batch statistics, or
            use the moving ones.

        Returns:
          The normalised array, same shape and dtype as ``x``.
        """
        x = jnp.asarray(x)
        where = f"BatchNorm at '{self.module_path}'"
        if x.ndim < 2:
            raise errors.MiniHaikuError(
                f"{where} got an input of shape {x.shape}; it needs shape "
                "[batch, ..., channels]. Fix: add a batch axis, e.g. x[None].")
        try:
            is_training = bool(is_training)
        except jax.errors.ConcretizationTypeError:
            raise errors.MiniHaikuError(
                f"{where}: is_training must be a Python bool, not a traced "
                "value. Fix: pass it as a static argument (e.g. "
                "jax.jit(apply, static_argnums=...)) or use mh.lifted.cond.") from None
        shape, dtype = (x.shape[-1],), x.dtype
        stats = self._statistics(shape, dtype, where)
        axes = tuple(range(x.ndim - 1))
        if is_training:
            mean = jnp.mean(x, axes)
            var = jnp.mean(jnp.square(x), axes) - jnp.square(mean)
            self._update(stats, mean, var)
        else:
            mean, var = stats["moving_mean"], stats["moving_var"]
        return _normalize.normalize(self, x, mean, var, shape, dtype)

    def _statistics(self, shape, dtype, where: str) -> dict:
        # Read every entry, training or not, so that init creates all of them.
        specs = {"counter": ((), jnp.int32), "mean_hidden": (shape, dtype),
                 "var_hidden": (shape, dtype), "moving_mean": (shape, dtype),
                 "moving_var": (shape, dtype)}
        try:
            return {name: state_lib.get_state(name, s, d, init=jnp.zeros)
                    for name, (s, d) in specs.items()}
        except (errors.MissingStateError, errors.StateNotAllowedError) as e:
            raise type(e)(
                f"{where} keeps its moving statistics in state, which is "
                f"missing here: {e} BatchNorm needs mh.transform_with_state, "
                "and apply needs the state returned by init (or by the "
                "previous apply).") from None

    def _update(self, stats: dict, mean, var) -> None:
        counter = stats["counter"] + 1
        decay = jnp.asarray(self.decay_rate, mean.dtype)
        debias = 1 - jnp.power(decay, counter)
        state_lib.set_state("counter", counter)
        for name, value in (("mean", mean), ("var", var)):
            hidden = stats[f"{name}_hidden"] * decay + value * (1 - decay)
            state_lib.set_state(f"{name}_hidden", hidden)
            state_lib.set_state(f"moving_{name}", hidden / debias)
