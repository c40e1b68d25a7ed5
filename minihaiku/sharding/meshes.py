"""``mesh``: a GSPMD (``Auto``) device mesh from ``"data:4,model:2"``."""

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from minihaiku import errors


def mesh(axes: str | Mapping[str, int], devices: Sequence | None = None) -> Mesh:
    """A mesh whose axes are ``Auto``: JAX's GSPMD propagates the shardings.

    ``jax.make_mesh`` makes ``Explicit`` axes by default, under which every
    op with an ambiguous output sharding (an embedding lookup on a sharded
    table) needs an annotation. minihaiku's modules carry none: the rules
    shard the params and GSPMD shards the rest.

    Args:
      axes: ``"data:4,model:2"`` (the form of a ``--mesh`` flag) or
        ``{"data": 4, "model": 2}``; one size may be ``-1``: all devices left.
      devices: the devices to use; default ``jax.devices()`` (all hosts').

    Returns:
      A ``jax.sharding.Mesh`` over exactly those devices.

    Example::

      mesh = mh.sharding.mesh(f"data:{jax.device_count()}")
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = _parse(axes)
    free = [n for n, s in sizes.items() if s == -1]
    known = int(np.prod([s for s in sizes.values() if s != -1]))
    if len(free) == 1 and known and len(devices) % known == 0:
        sizes[free[0]] = len(devices) // known
    if free[1:] or int(np.prod(list(sizes.values()))) != len(devices):
        raise errors.ShardingError(
            f"mesh({axes!r}): the axis sizes {sizes} must multiply to the "
            f"{len(devices)} devices (at most one size may be -1). Fix: e.g. "
            f"'data:{len(devices)}' or 'data:-1,model:1'.")
    return jax.make_mesh(tuple(sizes.values()), tuple(sizes),
                         axis_types=(AxisType.Auto,) * len(sizes), devices=devices)


def _parse(axes: Any) -> dict:
    if isinstance(axes, str):
        try:
            pairs = [(n.strip(), int(s)) for n, s in
                     (item.split(":") for item in axes.split(",") if item.strip())]
        except ValueError:
            pairs = None
    elif isinstance(axes, Mapping):
        pairs = list(axes.items())
    else:
        pairs = None
    if (not pairs or len({n for n, _ in pairs}) != len(pairs)
            or not all(isinstance(n, str) and n and isinstance(s, int) and not isinstance(s, bool)
                       and (s >= 1 or s == -1) for n, s in pairs)):
        raise errors.InvalidArgumentError(
            f"mesh({axes!r}): expected 'name:size,...' or {{name: size}} with "
            "distinct names and int sizes >= 1 (or one -1; not bools). Fix: e.g. 'data:4,model:2'.")
    return dict(pairs)
