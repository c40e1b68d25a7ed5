"""``MobileNetV1``, as dm-haiku's ``hk.nets.MobileNetV1``."""

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku.module import Module
from minihaiku.nets import _config
from minihaiku.nn.batch_norm import BatchNorm
from minihaiku.nn.conv import Conv2D
from minihaiku.nn.depthwise_conv import DepthwiseConv2D
from minihaiku.nn.linear import Linear


@dataclasses.dataclass(frozen=True)
class MobileNetV1Config:
    """What a ``MobileNetV1`` computes (``hk.nets.MobileNetV1``'s arguments).

    Attributes:
      strides: stride of each block's depthwise convolution.
      channels: output channels of each block's pointwise convolution.
      num_classes: size of the logits.
      use_bn: BatchNorm after every convolution (then convolutions have no
        bias; without it they do).
      decay_rate: of every ``BatchNorm`` (Haiku: 0.999).
    """

    strides: Sequence[int] = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
    channels: Sequence[int] = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512,
                               1024, 1024)
    num_classes: int = 1000
    use_bn: bool = True
    decay_rate: float = 0.999

    def __post_init__(self):
        _config.freeze(self, "strides", "channels")
        _config.check(len(self.strides) == len(self.channels), self,
                      f"strides ({len(self.strides)} entries) and channels "
                      f"({len(self.channels)}) must have the same length: one per block.")


class MobileNetV1Block(Module):
    """A depthwise 3x3 then pointwise 1x1 convolution, each with BatchNorm and ReLU."""

    def __init__(self, channels: int, stride: int, use_bn: bool = True,
                 decay_rate: float = 0.999, name: str | None = None):
        """Builds the block (its layers are built when called, as Haiku's).

        Args:
          channels: output channels.
          stride: stride of the depthwise convolution.
          use_bn: BatchNorm after each convolution (and no conv biases).
          decay_rate: of the BatchNorms.
          name: module name, default ``MobileNetV1Block``.
        """
        super().__init__(name=name)
        self.channels, self.stride = channels, stride
        self.use_bn, self.decay_rate = use_bn, decay_rate

    def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
        """Applies the block to ``x`` ``[N, H, W, C]``."""
        depthwise = DepthwiseConv2D(1, 3, self.stride, padding=((1, 1), (1, 1)),
                                    with_bias=not self.use_bn, name="depthwise_conv")
        pointwise = Conv2D(self.channels, 1, 1, padding="VALID", with_bias=not self.use_bn,
                           name="pointwise_conv")
        x = depthwise(x)
        if self.use_bn:
            x = BatchNorm(self.decay_rate)(x, is_training)
        x = pointwise(jax.nn.relu(x))
        if self.use_bn:
            x = BatchNorm(self.decay_rate)(x, is_training)
        return jax.nn.relu(x)


class MobileNetV1(Module):
    """MobileNet V1, as dm-haiku's ``hk.nets.MobileNetV1``.

    Layers are built when called, with Haiku's names: ``Conv2D_0`` (3x3,
    stride 2, ``VALID``), ``BatchNorm_0``, ``MobileNetV1Block_<i>`` (each with
    ``depthwise_conv_0``, ``pointwise_conv_0``, ``BatchNorm_0``,
    ``BatchNorm_1``), then the spatial mean and ``logits_0``; e.g.
    ``~/MobileNetV1_0/__call__/MobileNetV1Block_3/__call__/depthwise_conv_0/__call__/w``.
    There is no ``scan_layers``: blocks differ in channels and stride.

    Example::

      cfg = mh.nets.MobileNetV1Config(strides=(1, 2), channels=(8, 16), num_classes=4)
      f = mh.transform_with_state(lambda x, t: mh.nets.MobileNetV1(cfg)(x, t))
      params, state = f.init(0, jnp.ones([1, 16, 16, 3]), True)
    """

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any):
        """Builds the network.

        Args:
          *args: a ``MobileNetV1Config``, or its fields.
          name: module name, default ``MobileNetV1``.
          **kwargs: config fields by name.
        """
        super().__init__(name=name)
        self.config = _config.make_config(MobileNetV1Config, "mh.nets.MobileNetV1", args,
                                          kwargs)

    def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
        """Logits ``[N, num_classes]`` of images ``x`` ``[N, H, W, C]``."""
        config = self.config
        x = Conv2D(32, 3, 2, padding="VALID", with_bias=not config.use_bn)(x)
        if config.use_bn:
            x = BatchNorm(config.decay_rate)(x, is_training)
        x = jax.nn.relu(x)
        for channels, stride in zip(config.channels, config.strides, strict=True):
            x = MobileNetV1Block(channels, stride, config.use_bn, config.decay_rate)(
                x, is_training)
        x = jnp.mean(x, axis=(1, 2))
        return Linear(config.num_classes, name="logits")(x)
