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
    if not callable(apply):
        raise errors.InvalidArgumentError(
            f"mh.export: the first argument must be the apply function, got "
            f"{type(apply).__name__}. Fix: mh.export(transformed.apply, params, *example_args).")
    is_array = [is_array_like(a) for a in example_args]
    specs = _specs([a for a, arr in zip(example_args, is_array, strict=True) if arr], batch_axis)

    def fn(*arrays):
        it = iter(arrays)
        args = [next(it) if arr else a for a, arr in zip(example_args, is_array, strict=True)]
        return apply(params, *args)

    with config.override(profiler_names=True):
        exported = jax_export.export(jax.jit(fn), platforms=platforms)(*specs)
    if path is not None:
        blob = bytes(exported.serialize())

        def write(f):
            f.write(blob)

        _atomic_file.write(_atomic_file.as_str(path, "mh.export"), write)
    return exported


def is_array_like(x: Any) -> bool:
    """True for arrays and ``jax.ShapeDtypeStruct``s: the inputs an export traces."""
    return isinstance(x, jax.ShapeDtypeStruct) or hasattr(x, "shape") and hasattr(x, "dtype")


def _specs(arrays: list, batch_axis: int | None) -> list:
    if batch_axis is None or not arrays:
        return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
    (batch,) = jax_export.symbolic_shape("batch")
    specs = []
    for i, a in enumerate(arrays):
        shape = list(a.shape)
        if not -len(shape) <= batch_axis < len(shape):
            raise errors.InvalidArgumentError(
                f"mh.export: input {i} has shape {tuple(shape)}, which has no batch_axis="
                f"{batch_axis}. Fix: pass batch_axis=None for exact shapes, or inputs "
                "that all have a batch axis there.")
        shape[batch_axis] = batch
        specs.append(jax.ShapeDtypeStruct(tuple(shape), a.dtype))
    return specs
