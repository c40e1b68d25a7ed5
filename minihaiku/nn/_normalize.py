"""What LayerNorm and BatchNorm share: optional ``scale``/``offset`` params."""

from typing import Optional

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.params import Initializer


def scale_offset_inits(where: str, create_scale: bool, create_offset: bool,
                       scale_init: Optional[Initializer],
                       offset_init: Optional[Initializer]) -> tuple:
    """The ``scale``/``offset`` initializers (ones/zeros by default), validated."""
    if (scale_init is not None and not create_scale) or (
            offset_init is not None and not create_offset):
        raise errors.MiniHaikuError(
            f"{where} got an initializer for a param it does not create. Fix: "
            "drop scale_init/offset_init or set create_scale/create_offset=True.")
    return (scale_init or jax.nn.initializers.ones,
            offset_init or jax.nn.initializers.zeros)


def normalize(norm, x, mean, var, shape, dtype) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * scale + offset`` with ``norm``'s params."""
    inv = jax.lax.rsqrt(var + jnp.asarray(norm.eps, var.dtype))
    if norm.create_scale:
        inv = params_lib.get_param("scale", shape, dtype, norm.scale_init) * inv
    out = (x - mean) * inv
    if norm.create_offset:
        out = out + params_lib.get_param("offset", shape, dtype, norm.offset_init)
    return out
