"""``VectorQuantizer`` and ``VectorQuantizerEMA`` (VQ-VAE), as dm-haiku's ``hk.nets``."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku import params as params_lib
from minihaiku import rng as rng_lib
from minihaiku import state as state_lib
from minihaiku.module import Module, module_method
from minihaiku.nets import _config
from minihaiku.nn.moving_averages import ExponentialMovingAverage

_uniform_fan_in = jax.nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def _embeddings_init(shape: Any, dtype: Any) -> jax.Array:
    # State initializers take no key; dm-haiku's codebook init draws one from
    # the transform's rng, and so does this one.
    return _uniform_fan_in(rng_lib.next_rng_key(), shape, dtype)


@dataclasses.dataclass(frozen=True)
class VectorQuantizerConfig:
    """What a ``VectorQuantizer`` computes (``hk.nets.VectorQuantizer``'s arguments).

    Attributes:
      embedding_dim: size of each code vector (the input's last axis).
      num_embeddings: number of codes.
      commitment_cost: weight of the commitment loss (beta in the paper).
      dtype: of the codebook.
      cross_replica_axis: a mapped axis name to average the perplexity over.
    """

    embedding_dim: int
    num_embeddings: int
    commitment_cost: float
    dtype: Any = jnp.float32
    cross_replica_axis: str | None = None


@dataclasses.dataclass(frozen=True)
class VectorQuantizerEMAConfig:
    """What a ``VectorQuantizerEMA`` computes (``hk.nets.VectorQuantizerEMA``'s arguments).

    Attributes:
      embedding_dim: size of each code vector (the input's last axis).
      num_embeddings: number of codes.
      commitment_cost: weight of the commitment loss.
      decay: of the codebook's moving averages, in ``[0, 1)``.
      epsilon: Laplace smoothing of the cluster sizes.
      dtype: of the codebook.
      cross_replica_axis: a mapped axis name to sum the statistics over.
    """

    embedding_dim: int
    num_embeddings: int
    commitment_cost: float
    decay: float
    epsilon: float = 1e-5
    dtype: Any = jnp.float32
    cross_replica_axis: str | None = None


def _quantize(module: Any, inputs: jax.Array, embeddings: jax.Array) -> dict:
    """Nearest codes, straight-through output and the shared outputs of both quantizers."""
    dim = module.config.embedding_dim
    if inputs.shape[-1:] != (dim,):
        raise errors.ModuleInputError(
            f"{type(module).__name__} at '{module.module_path}' got an input of shape "
            f"{inputs.shape}; its last axis must be embedding_dim={dim}.")
    flat = jnp.reshape(inputs, [-1, dim])
    distances = (jnp.sum(jnp.square(flat), 1, keepdims=True) - 2 * flat @ embeddings
                 + jnp.sum(jnp.square(embeddings), 0, keepdims=True))
    indices = jnp.argmax(-distances, 1)
    encodings = jax.nn.one_hot(indices, module.config.num_embeddings, dtype=distances.dtype)
    indices = jnp.reshape(indices, inputs.shape[:-1])
    quantized = embeddings.swapaxes(1, 0)[(indices,)]
    avg_probs = jnp.mean(encodings, 0)
    if module.config.cross_replica_axis:
        avg_probs = jax.lax.pmean(avg_probs, axis_name=module.config.cross_replica_axis)
    return {
        "quantize": inputs + jax.lax.stop_gradient(quantized - inputs),
        "e_latent_loss": jnp.mean(jnp.square(jax.lax.stop_gradient(quantized) - inputs)),
        "q_latent_loss": jnp.mean(jnp.square(quantized - jax.lax.stop_gradient(inputs))),
        "perplexity": jnp.exp(-jnp.sum(avg_probs * jnp.log(avg_probs + 1e-10))),
        "encodings": encodings,
        "encoding_indices": indices,
        "distances": distances,
        "flat": flat,
    }


_OUTPUTS = ("quantize", "loss", "perplexity", "encodings", "encoding_indices", "distances")


class VectorQuantizer(Module):
    """A VQ-VAE vector quantizer with a learned codebook, as ``hk.nets.VectorQuantizer``.

    The codebook is the param ``<module path>/embeddings/embeddings`` of
    shape ``[embedding_dim, num_embeddings]`` (made by the public property
    ``embeddings``, shared by ``__call__`` and ``quantize``). Inputs are
    flattened to ``[-1, embedding_dim]`` and each row is replaced by its
    nearest code, with a straight-through gradient.

    Example::

      f = mh.transform(lambda x: mh.nets.VectorQuantizer(4, 16, 0.25)(x, True))
      params = f.init(0, jnp.ones([2, 3, 4]))
      out = f.apply(params, None, jnp.ones([2, 3, 4]))   # out["quantize"]: (2, 3, 4)
    """

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any):
        """Builds the quantizer.

        Args:
          *args: a ``VectorQuantizerConfig``, or its fields.
          name: module name, default ``VectorQuantizer``.
          **kwargs: config fields by name.
        """
        super().__init__(name=name)
        self.config = _config.make_config(VectorQuantizerConfig, "mh.nets.VectorQuantizer",
                                          args, kwargs)

    @property
    def embeddings(self) -> jax.Array:
        """The codebook, ``[embedding_dim, num_embeddings]``."""
        c = self.config
        return params_lib.get_param("embeddings", (c.embedding_dim, c.num_embeddings),
                                    c.dtype, _uniform_fan_in)

    def __call__(self, inputs: jax.Array, is_training: bool) -> dict:
        """Quantizes ``inputs`` ``[..., embedding_dim]``.

        Args:
          inputs: the vectors to quantize.
          is_training: unused (the signature is Haiku's).

        Returns:
          A dict: ``quantize`` (inputs' shape), ``loss`` (codebook plus
          ``commitment_cost`` times commitment), ``perplexity``,
          ``encodings`` (one-hot), ``encoding_indices``, ``distances``.
        """
        del is_training
        out = _quantize(self, jnp.asarray(inputs), self.embeddings)
        out["loss"] = out["q_latent_loss"] + self.config.commitment_cost * out["e_latent_loss"]
        return {k: out[k] for k in _OUTPUTS}

    def quantize(self, encoding_indices: jax.Array) -> jax.Array:
        """The code vectors of ``encoding_indices``: ``[..., embedding_dim]``."""
        return self.embeddings.swapaxes(1, 0)[(encoding_indices,)]


def _embeddings_setter(self: "VectorQuantizerEMA", value: jax.Array) -> None:
    state_lib.set_state("embeddings", value)


# Scoped as the `embeddings` property, so it writes the state that reads.
_embeddings_setter.__name__ = "embeddings"
_set_embeddings = module_method(_embeddings_setter)


class VectorQuantizerEMA(Module):
    """A VQ-VAE quantizer whose codebook follows moving averages, as ``hk.nets.VectorQuantizerEMA``.

    The codebook is state (``<module path>/embeddings/embeddings``, shape
    ``[embedding_dim, num_embeddings]``), updated in training from two
    ``ExponentialMovingAverage`` submodules built in ``__init__``:
    ``ema_cluster_size`` (codes' usage counts) and ``ema_dw`` (sums of the
    vectors assigned to each code), as in dm-haiku. Needs
    ``mh.transform_with_state``; the codebook's initial values are drawn from
    the transform's rng.

    Example::

      f = mh.transform_with_state(
          lambda x: mh.nets.VectorQuantizerEMA(4, 16, 0.25, 0.99)(x, True))
      params, state = f.init(0, jnp.ones([8, 4]))
      out, state = f.apply(params, state, None, jnp.ones([8, 4]))
    """

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any):
        """Builds the quantizer and its moving averages.

        Args:
          *args: a ``VectorQuantizerEMAConfig``, or its fields.
          name: module name, default ``VectorQuantizerEMA``.
          **kwargs: config fields by name.
        """
        super().__init__(name=name)
        self.config = c = _config.make_config(
            VectorQuantizerEMAConfig, "mh.nets.VectorQuantizerEMA", args, kwargs)
        self._ema_cluster_size = ExponentialMovingAverage(c.decay, name="ema_cluster_size")
        self._ema_dw = ExponentialMovingAverage(c.decay, name="ema_dw")

    @property
    def embeddings(self) -> jax.Array:
        """The codebook, ``[embedding_dim, num_embeddings]`` (state)."""
        c = self.config
        return state_lib.get_state("embeddings", (c.embedding_dim, c.num_embeddings),
                                   c.dtype, _embeddings_init)

    def __call__(self, inputs: jax.Array, is_training: bool) -> dict:
        """Quantizes ``inputs`` ``[..., embedding_dim]``; in training, updates the codebook.

        Args:
          inputs: the vectors to quantize.
          is_training: a Python bool: update the moving averages and codebook.

        Returns:
          As :meth:`VectorQuantizer.__call__`; ``loss`` is the commitment
          loss only (the codebook is not trained by gradient).
        """
        c = self.config
        out = _quantize(self, jnp.asarray(inputs), self.embeddings)
        if is_training:
            encodings = out["encodings"]
            cluster_size = jnp.sum(encodings, axis=0)
            dw = out["flat"].T @ encodings
            if c.cross_replica_axis:
                cluster_size = jax.lax.psum(cluster_size, axis_name=c.cross_replica_axis)
                dw = jax.lax.psum(dw, axis_name=c.cross_replica_axis)
            self._ema_cluster_size.initialize([c.num_embeddings], c.dtype)
            cluster_size = self._ema_cluster_size(cluster_size)
            self._ema_dw.initialize([c.embedding_dim, c.num_embeddings], c.dtype)
            dw = self._ema_dw(dw)
            n = jnp.sum(cluster_size)
            cluster_size = ((cluster_size + c.epsilon)
                            / (n + c.num_embeddings * c.epsilon) * n)
            _set_embeddings(self, dw / jnp.reshape(cluster_size, [1, -1]))
        out["loss"] = c.commitment_cost * out["e_latent_loss"]
        return {k: out[k] for k in _OUTPUTS}

    def quantize(self, encoding_indices: jax.Array) -> jax.Array:
        """The code vectors of ``encoding_indices``: ``[..., embedding_dim]``."""
        return self.embeddings.swapaxes(1, 0)[(encoding_indices,)]
