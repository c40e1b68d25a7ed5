"""``mh.export``: a trained network as a ``jax.export`` artefact, runnable without its Python.

The params are baked into the program as constants, the leading (batch) axis
of every array input is symbolic, and the module methods are traced with
``mh.config.profiler_names`` on, so every op's location in the StableHLO
names the module path that made it.
"""

from collections.abc import Callable
from typing import Any

import jax
from jax import export as jax_export

from minihaiku import _atomic_file, config, errors


def export(apply: Callable, params: Any, *example_args: Any, batch_axis: int | None = 0,
           path: Any = None, platforms: tuple | None = None) -> jax_export.Exported:
    """Exports ``apply(params, *example_args)`` with ``params`` fixed, as ``jax.export`` does.

    The result is a ``jax.export.Exported``: ``.serialize()`` gives the bytes
    (StableHLO plus calling convention) and
    ``jax.export.deserialize(blob).call(*args)`` runs it, from any program
    with JAX and no minihaiku or model code. Arguments are the
    ``example_args`` that are arrays (other values, e.g. ``None`` for the rng
    or Python flags, are fixed as given). Their ``batch_axis`` is symbolic,
    one size shared by all of them, so any batch size runs.

    Args:
      apply: the apply function (``transformed.apply``, or any function of
        ``(params, *args)``).
      params: the params (and state, as a tuple, for functions that take it).
      *example_args: example inputs: arrays or ``jax.ShapeDtypeStruct``s.
      batch_axis: the axis of every array input that may change size
        (``None``: exact shapes only).
      path: optional file to write the serialized artefact to (atomically).
      platforms: platforms to lower for (default: the current backend).

    Returns:
      The ``jax.export.Exported``.

    Example::

      init, apply = mh.without_apply_rng(mh.transform(lambda x: mh.nn.Linear(2)(x)))
      params = init(0, jnp.ones((1, 3)))
      blob = mh.export(apply, params, jnp.ones((1, 3))).serialize()
      out = jax.export.deserialize(blob).call(jnp.ones((5, 3)))   # any batch size
    """
    (batch,) = jax_export.symbolic_shape("batch")
    fn, specs = with_params_fixed("mh.export", apply, params, example_args, batch_axis, batch)

    with config.override(profiler_names=True):
        exported = jax_export.export(jax.jit(fn), platforms=platforms)(*specs)
    if path is not None:
        blob = bytes(exported.serialize())

        def write(f):
            f.write(blob)

        _atomic_file.write(_atomic_file.as_str(path, "mh.export"), write)
    return exported


def with_params_fixed(who: str, apply: Callable, params: Any, example_args: tuple,
                      batch_axis: int | None, batch: Any) -> tuple[Callable, list]:
    """``fn(*arrays) = apply(params, *example_args)`` and the specs of its array inputs.

    The array inputs are the ``example_args`` with a shape (the others are
    fixed as given); their ``batch_axis`` becomes ``batch`` (a symbolic
    dimension for ``jax.export``, a name for jax2onnx).
    """
    if not callable(apply):
        raise errors.InvalidArgumentError(
            f"{who}: the first argument must be the apply function, got "
            f"{type(apply).__name__}. Fix: {who}(transformed.apply, params, *example_args).")
    is_array = [_is_array(a) for a in example_args]
    specs = []
    for i, a in enumerate(a for a, arr in zip(example_args, is_array, strict=True) if arr):
        shape: list[Any] = list(a.shape)
        if batch_axis is not None:
            if not -len(shape) <= batch_axis < len(shape):
                raise errors.InvalidArgumentError(
                    f"{who}: input {i} has shape {tuple(shape)}, which has no batch_axis="
                    f"{batch_axis}. Fix: pass batch_axis=None for exact shapes, or inputs "
                    "that all have a batch axis there.")
            shape[batch_axis] = batch
        specs.append(jax.ShapeDtypeStruct(tuple(shape), a.dtype))

    def fn(*arrays):
        it = iter(arrays)
        args = [next(it) if arr else a for a, arr in zip(example_args, is_array, strict=True)]
        return apply(params, *args)

    return fn, specs


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct) or hasattr(x, "shape") and hasattr(x, "dtype")
