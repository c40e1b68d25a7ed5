"""Rotary position embeddings (RoPE), in the Hugging Face Llama layout."""

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module


def apply_rotary(x: jax.Array, positions: jax.Array, *, theta: float = 10000.0) -> jax.Array:
    """Rotates ``x`` by its positions: rotary position embedding (RoPE).

    ``x`` is ``[..., T, num_heads, head_dim]`` and ``positions`` holds the
    position of each of the ``T`` steps, any shape broadcasting to
    ``x.shape[:-2]`` (e.g. ``[T]`` or ``[batch, T]``). With ``d = head_dim``
    and ``f_i = theta ** (-2i / d)`` for ``i < d/2``, the angle of feature
    ``i`` and ``i + d/2`` at position ``p`` is ``p * f_i``, and::

      out = x * cos + rotate_half(x) * sin,   rotate_half(x) = concat([-x2, x1])

    where ``x1, x2`` are the two halves of the last axis: the "rotate half"
    convention of Hugging Face's Llama (not the interleaved pairs of the RoPE
    paper), so checkpoints of that family load unchanged. Angles, cosines and
    sines are computed in float32 and cast to ``x``'s dtype, as there.

    Args:
      x: ``[..., T, num_heads, head_dim]``, ``head_dim`` even.
      positions: integer (or float) positions broadcasting to ``x.shape[:-2]``.
      theta: the base of the frequencies (``rope_theta``; Llama 2: 10000,
        Llama 3: 500000).

    Returns:
      An array of ``x``'s shape and dtype.

    Example::

      q = jnp.ones([2, 5, 4, 8])                       # [batch, T, heads, head_dim]
      q = mh.nn.apply_rotary(q, jnp.arange(5))         # position 0 is left as it is
    """
    x = jnp.asarray(x)
    positions = jnp.asarray(positions)
    if x.ndim < 3 or x.shape[-1] % 2:
        raise errors.ModuleInputError(
            f"apply_rotary got x of shape {x.shape}; it needs [..., T, num_heads, "
            "head_dim] with an even head_dim. Fix: split the heads first, e.g. "
            "x.reshape(batch, T, num_heads, head_dim).")
    try:
        jnp.broadcast_shapes(positions.shape, x.shape[:-2])
    except ValueError:
        raise errors.ModuleInputError(
            f"apply_rotary got positions of shape {positions.shape} for x of shape "
            f"{x.shape}; positions must broadcast to x.shape[:-2] = {x.shape[:-2]}. "
            "Fix: pass one position per step, e.g. jnp.arange(T).") from None
    cos, sin = _cos_sin(positions, x.shape[-1], theta)
    cos, sin = cos[..., None, :].astype(x.dtype), sin[..., None, :].astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def _cos_sin(positions: jax.Array, dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """``cos`` and ``sin`` ``positions.shape + (dim,)`` of the angles, in float32."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


class RotaryEmbedding(Module):
    """A module applying :func:`apply_rotary` with a fixed ``theta``.

    It has no params; it exists so a network can hold its RoPE settings (and
    be intercepted like any module method).

    Example::

      def f(q):
        return mh.nn.RotaryEmbedding(theta=500000.0)(q, jnp.arange(q.shape[-3]))

      out = mh.transform(f).apply({}, None, jnp.ones([1, 3, 2, 4]))   # [1, 3, 2, 4]
    """

    def __init__(self, theta: float = 10000.0, name: str | None = None):
        """Builds the module.

        Args:
          theta: the base of the frequencies (``rope_theta``).
          name: module name, default ``RotaryEmbedding``.
        """
        super().__init__(name=name)
        if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
            raise errors.InvalidArgumentError(
                f"RotaryEmbedding at '{self.module_path}': theta={theta!r} must be a "
                "positive number. Fix: pass e.g. theta=10000.0.")
        self.theta = float(theta)

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        """Returns ``apply_rotary(x, positions, theta=self.theta)``."""
        return apply_rotary(x, positions, theta=self.theta)
