"""``VisionTransformer``: a ViT classifier (patch embedding, class token, pre-norm blocks)."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import params as params_lib
from minihaiku.lifted import layer_stack
from minihaiku.module import Module
from minihaiku.nets import _config
from minihaiku.nn.attention import MultiHeadAttention
from minihaiku.nn.conv import Conv2D
from minihaiku.nn.layer_norm import LayerNorm
from minihaiku.nn.linear import Linear

_fan_in = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_position_init = jax.nn.initializers.normal(0.02)
_zeros = jax.nn.initializers.zeros


@dataclasses.dataclass(frozen=True)
class VisionTransformerConfig:
    """What a ``VisionTransformer`` computes.

    Attributes:
      patch_size: side of the square patches (the image sides must be
        multiples of it).
      hidden_size: width of the tokens.
      num_layers: number of encoder blocks.
      num_heads: attention heads (must divide ``hidden_size``).
      mlp_size: hidden width of each block's MLP.
      num_classes: size of the logits.
      eps: of every ``LayerNorm``.
      scan_layers: run the encoder blocks as one ``mh.lifted.layer_stack``
        (params stacked on a leading axis; same outputs as unrolled).
    """

    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_size: int
    num_classes: int
    eps: float = 1e-6
    scan_layers: bool = False

    def __post_init__(self):
        for field in ("patch_size", "hidden_size", "num_layers", "num_heads", "mlp_size",
                      "num_classes"):
            value = getattr(self, field)
            _config.check(isinstance(value, int) and value >= 1, self,
                          f"{field}={value!r} must be an int >= 1.")
        _config.check(self.hidden_size % self.num_heads == 0, self,
                      f"num_heads={self.num_heads} must divide hidden_size="
                      f"{self.hidden_size}.")


class EncoderBlock(Module):
    """A pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``.

    Layers (built when called): ``LayerNorm_0``, ``MultiHeadAttention_0``,
    ``LayerNorm_1``, ``Linear_0`` (to ``mlp_size``, exact GELU), ``Linear_1``.
    """

    def __init__(self, config: VisionTransformerConfig, name: str | None = None):
        """Builds the block for ``config``'s sizes.

        Args:
          config: the network's config.
          name: module name, default ``EncoderBlock``.
        """
        super().__init__(name=name)
        self.config = config

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to tokens ``x`` ``[N, T, hidden_size]``."""
        c = self.config
        y = LayerNorm(eps=c.eps)(x)
        y = MultiHeadAttention(c.num_heads, c.hidden_size // c.num_heads, _fan_in,
                               model_size=c.hidden_size)(y, y, y)
        x = x + y
        y = Linear(c.mlp_size)(LayerNorm(eps=c.eps)(x))
        return x + Linear(c.hidden_size)(jax.nn.gelu(y, approximate=False))


class VisionTransformer(Module):
    """A Vision Transformer (ViT) classifier.

    Images ``[N, H, W, C]`` are cut into ``patch_size`` patches by the
    convolution ``patch_embedding_0`` (kernel = stride = patch, ``VALID``),
    flattened to tokens, prefixed by the learned ``cls_token`` (zeros at
    init) and added to the learned ``position_embeddings`` (normal, stddev
    0.02; shape ``[1, 1 + patches, hidden_size]``, so the image size is fixed
    at init). ``num_layers`` ``EncoderBlock``s follow (``EncoderBlock_<i>``,
    or one stacked ``EncoderBlock_0`` with ``scan_layers``), then the final
    ``LayerNorm_0`` and the ``head_0`` Linear on the class token. No dropout.

    Example::

      cfg = mh.nets.VisionTransformerConfig(patch_size=4, hidden_size=16,
                                            num_layers=2, num_heads=2,
                                            mlp_size=32, num_classes=10)
      f = mh.transform(lambda x: mh.nets.VisionTransformer(cfg)(x))
      params = f.init(0, jnp.ones([1, 8, 8, 3]))
      logits = f.apply(params, None, jnp.ones([1, 8, 8, 3]))   # (1, 10)
    """

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any):
        """Builds the network.

        Args:
          *args: a ``VisionTransformerConfig``, or its fields.
          name: module name, default ``VisionTransformer``.
          **kwargs: config fields by name.
        """
        super().__init__(name=name)
        self.config = _config.make_config(VisionTransformerConfig,
                                          "mh.nets.VisionTransformer", args, kwargs)

    def __call__(self, images: jax.Array) -> jax.Array:
        """Logits ``[N, num_classes]`` of ``images`` ``[N, H, W, C]``."""
        c = self.config
        x = Conv2D(c.hidden_size, c.patch_size, c.patch_size, padding="VALID",
                   name="patch_embedding")(images)
        n = x.shape[0]
        x = jnp.reshape(x, (n, -1, c.hidden_size))
        cls = params_lib.get_param("cls_token", (1, 1, c.hidden_size), x.dtype, _zeros)
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, c.hidden_size)), x], axis=1)
        x = x + params_lib.get_param("position_embeddings", (1,) + x.shape[1:], x.dtype,
                                     _position_init)
        if c.scan_layers:
            x = layer_stack(c.num_layers)(lambda x: EncoderBlock(c)(x))(x)
        else:
            for _ in range(c.num_layers):
                x = EncoderBlock(c)(x)
        x = LayerNorm(eps=c.eps)(x)
        return Linear(c.num_classes, name="head")(x[:, 0])
