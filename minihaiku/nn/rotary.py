"""Rotary position embeddings (RoPE), in the Hugging Face Llama layout."""

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.module import Module


def apply_rotary(x: jax.Array, positions: jax.Array | None = None, *,
                 theta: float = 10000.0,
                 cos_sin: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
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

    A deep net computes the tables once with :func:`rotary_cos_sin` and
    passes them to every layer as ``cos_sin`` instead of ``positions``: the
    same numbers, without recomputing them (and saving them for the
    gradient) in each layer.

    Args:
      x: ``[..., T, num_heads, head_dim]``, ``head_dim`` even.
      positions: integer (or float) positions broadcasting to ``x.shape[:-2]``.
      theta: the base of the frequencies (``rope_theta``; Llama 2: 10000,
        Llama 3: 500000).
      cos_sin: instead of ``positions`` (and ``theta``): the tables
        :func:`rotary_cos_sin` returns for them.

    Returns:
      An array of ``x``'s shape and dtype.

    Example::

      q = jnp.ones([2, 5, 4, 8])                       # [batch, T, heads, head_dim]
      q = mh.nn.apply_rotary(q, jnp.arange(5))         # position 0 is left as it is
    """
    x = jnp.asarray(x)
    if (positions is None) == (cos_sin is None):
        raise errors.InvalidArgumentError(
            "apply_rotary needs exactly one of positions and cos_sin, got "
            f"{'both' if cos_sin is not None else 'neither'}. Fix: pass the positions, or "
            "the tables of rotary_cos_sin(positions, head_dim, theta).")
    if x.ndim < 3 or x.shape[-1] % 2:
        raise errors.ModuleInputError(
            f"apply_rotary got x of shape {x.shape}; it needs [..., T, num_heads, "
            "head_dim] with an even head_dim. Fix: split the heads first, e.g. "
            "x.reshape(batch, T, num_heads, head_dim).")
    cos, sin = cos_sin if cos_sin is not None else rotary_cos_sin(
        positions, x.shape[-1], theta)  # type: ignore[arg-type]
    try:
        jnp.broadcast_shapes(cos.shape[:-1], x.shape[:-2])
    except ValueError:
        raise errors.ModuleInputError(
            f"apply_rotary got positions of shape {cos.shape[:-1]} for x of shape "
            f"{x.shape}; positions must broadcast to x.shape[:-2] = {x.shape[:-2]}. "
            "Fix: pass one position per step, e.g. jnp.arange(T).") from None
    if cos.shape[-1] != x.shape[-1]:
        raise errors.ModuleInputError(
            f"apply_rotary got cos_sin tables of size {cos.shape[-1]} for x of shape "
            f"{x.shape}. Fix: build them with rotary_cos_sin(positions, {x.shape[-1]}, theta).")
    cos, sin = cos[..., None, :].astype(x.dtype), sin[..., None, :].astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def rotary_cos_sin(positions: jax.Array, head_dim: int,
                   theta: float = 10000.0) -> tuple[jax.Array, jax.Array]:
    """The float32 tables ``(cos, sin)``, each ``positions.shape + (head_dim,)``, of RoPE.

    Entry ``[..., i]`` and ``[..., i + head_dim/2]`` are the cosine (sine)
    of ``position * theta ** (-2i / head_dim)``. Pass them to
    :func:`apply_rotary` as ``cos_sin`` to rotate many tensors (all layers'
    queries and keys) at the same positions.

    Example::

      cos, sin = mh.nn.rotary_cos_sin(jnp.arange(5), 8)            # [5, 8] each
      q = mh.nn.apply_rotary(jnp.ones([1, 5, 2, 8]), cos_sin=(cos, sin))
    """
    positions = jnp.asarray(positions)
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
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
