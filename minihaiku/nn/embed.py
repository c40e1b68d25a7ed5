"""``Embed``: a lookup table of vectors, one per token id."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku.module import Module
from minihaiku.nn import _layer_args
from minihaiku.params import Initializer

_truncated_normal = functools.partial(_layer_args.truncated_normal, 1.0)  # Haiku's default


class Embed(Module):
    """Maps integer ids to vectors; ``attend`` scores vectors against the table.

    The param ``embeddings`` ``[vocab_size, embed_dim]`` (default truncated
    normal, stddev 1, as Haiku) is created by the public method
    :meth:`embeddings`, which both ``__call__`` and ``attend`` call, so it has
    one path, ``<module path>/embeddings/embeddings``, shared by both.

    Ids must be in ``[0, vocab_size)``. Concrete (eager) ids out of range,
    negative ones included, are a ``ModuleInputError``. Under ``jax.jit`` ids
    are not known and not checked: JAX's indexing wraps a negative id ``-k``
    (``k <= vocab_size``) to row ``vocab_size - k`` as NumPy does (``-1`` reads
    the last row), then clamps into range: an id ``>= vocab_size`` reads the
    last row, one ``< -vocab_size`` the first (the same as dm-haiku).

    Example::

      def f(ids):
        embed = mh.nn.Embed(100, 8)
        h = embed(ids)            # [..., 8]
        return embed.attend(h)    # [..., 100] logits (tied weights)
    """

    def __init__(self, vocab_size: int, embed_dim: int,
                 w_init: Initializer | None = None,
                 name: str | None = None):
        """Builds the table.

        Args:
          vocab_size: number of ids.
          embed_dim: size of each vector.
          w_init: ``init(key, shape, dtype)`` of the table.
          name: module name, default ``Embed``.
        """
        super().__init__(name=name)
        self.vocab_size = _layer_args.positive_int(self, vocab_size, "vocab_size", 1000)
        self.embed_dim = _layer_args.positive_int(self, embed_dim, "embed_dim", 64)
        self.w_init = w_init or _truncated_normal

    def embeddings(self) -> jax.Array:
        """The table ``[vocab_size, embed_dim]`` (creates it in init)."""
        return params_lib.get_param("embeddings", (self.vocab_size, self.embed_dim),
                                    jnp.float32, self.w_init)

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Looks up ``ids`` (any shape, integer dtype): ``ids.shape + (embed_dim,)``."""
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise errors.ModuleInputError(
                f"Embed at '{self.module_path}' got ids of dtype {ids.dtype} "
                f"(shape {ids.shape}); ids must be integers. Fix: cast with "
                "ids.astype(jnp.int32).")
        if not isinstance(ids, jax.core.Tracer) and ids.size:
            # Host-side: a jnp reduction would itself be traced when concrete
            # ids are closed over by a jitted function.
            host = np.asarray(ids)
            lo, hi = int(host.min()), int(host.max())
            if lo < 0 or hi >= self.vocab_size:
                raise errors.ModuleInputError(
                    f"Embed at '{self.module_path}' (vocab_size={self.vocab_size}) got "
                    f"ids of shape {ids.shape} in [{lo}, {hi}]; ids must be in [0, "
                    f"{self.vocab_size}). Fix: map ids into the vocabulary or raise "
                    "vocab_size. (Under jax.jit ids are not checked: a negative id -k "
                    "reads row vocab_size - k, as NumPy indexing, and ids still out of "
                    "range are clamped, as in dm-haiku.)")
        # jnp.asarray: params loaded by mh.io are numpy arrays, which traced ids
        # cannot index.
        return jnp.asarray(self.embeddings())[ids]

    def attend(self, x: jax.Array) -> jax.Array:
        """Scores ``x`` ``[..., embed_dim]`` against every row: ``x @ embeddings.T``."""
        x = jnp.asarray(x)
        if not x.ndim or x.shape[-1] != self.embed_dim:
            raise errors.ModuleInputError(
                f"Embed.attend at '{self.module_path}' got shape {x.shape}; it "
                f"needs [..., {self.embed_dim}] (embed_dim). Fix: project x to "
                "embed_dim first.")
        return x @ self.embeddings().T
