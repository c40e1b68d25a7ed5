"""``BatchNorm``: normalise over the batch, keeping moving statistics in state."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import _transform as transform_lib
from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn import _normalize
from minihaiku.nn.moving_averages import ExponentialMovingAverage
from minihaiku.params import Initializer


def _refuse_haiku_order(init: Callable[..., None]) -> Callable[..., None]:
    # dm-haiku's BatchNorm(create_scale, create_offset, decay_rate, ...) would
    # otherwise fail as a bare positional TypeError, or put a flag in decay_rate.
    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > 2 or any(isinstance(a, bool) for a in args):
            shown = ", ".join(map(repr, args))
            raise errors.InvalidArgumentError(
                f"BatchNorm({shown}) looks like dm-haiku's signature "
                "BatchNorm(create_scale, create_offset, decay_rate, eps=1e-5, ...); "
                "here it is BatchNorm(decay_rate, eps=1e-5, *, create_scale=True, "
                "create_offset=True, ...). Fix: e.g. BatchNorm(0.9, create_scale=True, "
                "create_offset=True).")
        init(self, *args, **kwargs)
    return __init__


class BatchNorm(Module):
    """Batch normalisation over all axes but the channels (or over ``axis``).

    In training (or with ``test_local_stats``) it normalises with the batch
    mean and variance; otherwise with the moving ones. Training updates the
    moving statistics, two zero-debiased ``ExponentialMovingAverage``
    submodules built in ``__init__`` as in dm-haiku: ``mean_ema`` and
    ``var_ema``, so the state is, under
    ``<module path>/__init__/{mean_ema_0,var_ema_0}/__call__/``: ``counter``
    (int32), ``hidden`` and ``average`` (shape ``[channels]``). Params
    ``scale`` (ones) and ``offset`` (zeros) have shape ``[channels]``. Needs
    ``mh.transform_with_state``. (With an explicit ``axis`` leaving several
    axes, params and statistics have the shape of the kept axes.)

    Init state, as dm-haiku's: ``counter`` 0, ``hidden`` zeros, and
    ``average`` the statistics of the batch init was called with (not zeros).
    So a model evaluated straight after init normalises with that batch's
    statistics, and the first training step in apply (counter 1) sets the
    averages to the first training batch's statistics. Unlike dm-haiku, init
    with ``is_training=False`` works too (it computes the same batch
    statistics to create the state).

    The batch variance is the mean of squared deviations from the batch mean
    (two passes), so inputs with ``|mean| >> std`` stay exact. Haiku computes
    ``E[x²] - E[x]²``, which cancels there: e.g. for ``1000 + [.1, .2, .3,
    .4]`` Haiku's ``BatchNorm`` returns ``[-47.4, -15.8, 15.8, 47.4]``, this
    one ``[-1.342, -0.447, 0.447, 1.342]``. Elsewhere the two agree to float
    rounding. With ``cross_replica_axis``, the mean and then the variance are
    averaged with ``jax.lax.pmean`` over that named axis (bound by
    ``jax.pmap``, ``shard_map`` or ``jax.vmap(axis_name=...)``), giving the
    statistics of the global batch.

    Example::

      f = mh.transform_with_state(lambda x, t: mh.nn.BatchNorm(0.9)(x, t))
      x = jnp.arange(12.0).reshape(4, 3)
      params, state = f.init(0, x, True)
      y, state = f.apply(params, state, None, x, True)
    """

    keeps_float32 = True  # statistics in low precision lose what they measure

    @_refuse_haiku_order
    def __init__(self, decay_rate: float, eps: float = 1e-5, *,
                 create_scale: bool = True, create_offset: bool = True,
                 scale_init: Initializer | None = None,
                 offset_init: Initializer | None = None,
                 axis: Sequence[int] | None = None,
                 cross_replica_axis: str | Sequence[str] | None = None,
                 data_format: str = "channels_last",
                 test_local_stats: bool = False,
                 name: str | None = None):
        """Builds the layer.

        Args:
          decay_rate: decay of the moving statistics, in ``[0, 1)``.
          eps: added to the variance.
          create_scale: learn a per-channel ``scale``.
          create_offset: learn a per-channel ``offset``.
          scale_init: ``init(key, shape, dtype)`` of ``scale`` (default ones).
          offset_init: ``init(key, shape, dtype)`` of ``offset`` (default zeros).
          axis: the axes to reduce over (default: all but the channel axis).
          cross_replica_axis: name(s) of a mapped axis to average the batch
            statistics over (``jax.lax.pmean``).
          data_format: ``"channels_last"`` (``N...C``) or ``"channels_first"``
            (``NC...``); says which axis holds the channels.
          test_local_stats: the default of ``__call__``'s ``test_local_stats``.
          name: module name, default ``BatchNorm``.
        """
        super().__init__(name=name)
        self._where = where = f"{type(self).__name__} at '{self.module_path}'"
        if not 0 <= decay_rate < 1:
            raise errors.InvalidArgumentError(
                f"{where} got decay_rate={decay_rate!r}; "
                "it must be in [0, 1). Fix: pass e.g. decay_rate=0.9.")
        self.axis = None if axis is None else _normalize.check_axes(where, "axis", axis)
        self.channel_index = _normalize.channel_index(data_format, where)
        self.data_format = data_format
        self.cross_replica_axis = cross_replica_axis
        self.decay_rate = decay_rate
        self.eps = eps
        self.create_scale = create_scale
        self.create_offset = create_offset
        self.scale_init, self.offset_init = _normalize.scale_offset_inits(
            f"BatchNorm at '{self.module_path}'", create_scale, create_offset,
            scale_init, offset_init)
        self.test_local_stats = test_local_stats
        self.mean_ema = ExponentialMovingAverage(decay_rate, name="mean_ema")
        self.var_ema = ExponentialMovingAverage(decay_rate, name="var_ema")

    def __call__(self, x: jax.Array, is_training: bool,
                 test_local_stats: bool | None = None) -> jax.Array:
        """Normalises ``x`` of shape ``[batch, ..., channels]``.

        Args:
          x: the input, rank at least 2.
          is_training: a Python bool: use (and update) batch statistics, or
            use the moving ones.
          test_local_stats: when not training, normalise with the batch
            statistics anyway (the moving ones are not updated); default: the
            constructor's.

        Returns:
          The normalised array, same shape and dtype as ``x``.
        """
        x = jnp.asarray(x)
        where = self._where
        if x.ndim < 2:
            raise errors.ModuleInputError(
                f"{where} got an input of shape {x.shape}; it needs shape "
                "[batch, ..., channels]. Fix: add a batch axis, e.g. x[None].")
        try:
            is_training = bool(is_training)
        except jax.errors.ConcretizationTypeError:
            raise errors.InvalidArgumentError(
                f"{where}: is_training must be a Python bool, not a traced "
                "value. Fix: pass it as a static argument (e.g. "
                "jax.jit(apply, static_argnums=...)) or use mh.lifted.cond.") from None
        if self.axis is None:
            ci = self.channel_index % x.ndim
            axes = tuple(i for i in range(x.ndim) if i != ci)
        else:
            axes = _normalize.abs_axes(self.axis, x.ndim, where)
        kept = tuple(i for i in range(x.ndim) if i not in axes)
        shape, dtype = tuple(x.shape[i] for i in kept), x.dtype
        # Broadcast [kept sizes] against x; None when they already line up.
        bshape = None if kept == tuple(range(x.ndim - len(kept), x.ndim)) else tuple(
            x.shape[i] if i in kept else 1 for i in range(x.ndim))
        if test_local_stats is None:
            test_local_stats = self.test_local_stats
        init = not is_training and transform_lib.running_init()
        if is_training or test_local_stats or init:
            mean = self._mean(x, axes, where)
            centered = x - (mean if bshape is None else mean.reshape(bshape))
            var = self._mean(jnp.square(centered), axes, where)
            if is_training or init:
                # Init always creates the state, from this batch (dm-haiku's
                # init state when training; dm-haiku's init fails otherwise).
                self._update(mean, var, where)
        else:
            mean, var = self._averages(shape, dtype, where)
        if bshape is not None:
            mean, var = mean.reshape(bshape), var.reshape(bshape)
        return _normalize.normalize(self, x, mean, var, shape, dtype, bshape)

    def _mean(self, x: jax.Array, axes: Any, where: str) -> jax.Array:
        mean = jnp.mean(x, axes)
        if self.cross_replica_axis is None:
            return mean
        try:
            return jax.lax.pmean(mean, self.cross_replica_axis)
        except NameError as e:
            raise errors.ModuleInputError(
                f"{where}: cross_replica_axis={self.cross_replica_axis!r} is not "
                f"bound here ({e}). Fix: call it under jax.pmap/shard_map/"
                "jax.vmap(axis_name=...) (lifted: mh.lifted.vmap(axis_name=...)) "
                "with that axis name, or pass cross_replica_axis=None.") from None

    def _averages(self, shape: Any, dtype: Any, where: str) -> tuple[jax.Array, jax.Array]:
        try:
            mean, var = self.mean_ema.average, self.var_ema.average
        except (errors.MissingStateError, errors.StateNotAllowedError) as e:
            raise type(e)(_missing_state(where, e)) from None
        for name, value in (("mean", mean), ("var", var)):
            if value.shape != shape:
                raise errors.MismatchError(
                    f"{where}: the moving {name} has shape {value.shape}, but this "
                    f"input's statistics have shape {shape}. Fix: call it with "
                    "inputs of the channel count init saw.")
        return mean.astype(dtype), var.astype(dtype)

    def _update(self, mean: jax.Array, var: jax.Array, where: str) -> None:
        try:
            self.mean_ema(mean)
            self.var_ema(var)
        except (errors.MissingStateError, errors.StateNotAllowedError) as e:
            raise type(e)(_missing_state(where, e)) from None


def _missing_state(where: str, e: Exception) -> str:
    return (f"{where} keeps its moving statistics in state, which is missing "
            f"here: {e} BatchNorm needs mh.transform_with_state, and apply needs "
            "the state returned by init (or by the previous apply).")
