"""``ResNet`` V1/V2 and ``ResNet18`` ... ``ResNet200``, as dm-haiku's ``hk.nets``."""

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.lifted import layer_stack
from minihaiku.module import Module
from minihaiku.nets import _config
from minihaiku.nn.batch_norm import BatchNorm
from minihaiku.nn.conv import Conv2D
from minihaiku.nn.linear import Linear
from minihaiku.nn.pool import max_pool

_zeros = jax.nn.initializers.zeros

# Haiku's ResNet.CONFIGS: blocks per group, bottleneck, channels per group,
# projection per group.
_DEPTHS = {
    18: ((2, 2, 2, 2), False, (64, 128, 256, 512), (False, True, True, True)),
    34: ((3, 4, 6, 3), False, (64, 128, 256, 512), (False, True, True, True)),
    50: ((3, 4, 6, 3), True, (256, 512, 1024, 2048), (True,) * 4),
    101: ((3, 4, 23, 3), True, (256, 512, 1024, 2048), (True,) * 4),
    152: ((3, 8, 36, 3), True, (256, 512, 1024, 2048), (True,) * 4),
    200: ((3, 24, 36, 3), True, (256, 512, 1024, 2048), (True,) * 4),
}


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """What a ``ResNet`` computes (``hk.nets.ResNet``'s arguments, flattened).

    Attributes:
      blocks_per_group: blocks in each of the 4 groups.
      num_classes: size of the logits.
      resnet_v2: pre-activation blocks (V2) instead of V1.
      bottleneck: 1x1-3x3-1x1 blocks (channels / 4 inside) instead of 3x3-3x3.
      channels_per_group: output channels of each group.
      use_projection: a 1x1 projection shortcut in each group's first block.
      strides: stride of each group's first block.
      decay_rate: of every ``BatchNorm``'s moving statistics.
      eps: of every ``BatchNorm``.
      initial_conv_channels: output channels of the 7x7 stem convolution.
      initial_conv_kernel: its kernel size.
      initial_conv_stride: its stride.
      scan_layers: run each group's blocks after the first (all alike) as one
        ``mh.lifted.layer_stack``: params stacked on a leading axis, same
        outputs as unrolled.
    """

    blocks_per_group: Sequence[int]
    num_classes: int
    resnet_v2: bool = False
    bottleneck: bool = True
    channels_per_group: Sequence[int] = (256, 512, 1024, 2048)
    use_projection: Sequence[bool] = (True, True, True, True)
    strides: Sequence[int] = (1, 2, 2, 2)
    decay_rate: float = 0.9
    eps: float = 1e-5
    initial_conv_channels: int = 64
    initial_conv_kernel: int = 7
    initial_conv_stride: int = 2
    scan_layers: bool = False

    def __post_init__(self):
        _config.freeze(self, "blocks_per_group", "channels_per_group", "use_projection",
                       "strides")
        for field in ("blocks_per_group", "channels_per_group", "use_projection", "strides"):
            value = getattr(self, field)
            _config.check(len(value) == 4, self,
                          f"{field}={value!r} must have 4 entries (one per group).")
        _config.check(all(b >= 1 for b in self.blocks_per_group), self,
                      f"blocks_per_group={self.blocks_per_group} must be >= 1 each.")
        _config.check(not self.bottleneck or all(c % 4 == 0 for c in self.channels_per_group),
                      self, f"bottleneck blocks need channels_per_group divisible by 4, "
                      f"got {self.channels_per_group}.")

    @classmethod
    def of_depth(cls, depth: int, num_classes: int, **kwargs: Any) -> "ResNetConfig":
        """The config of ``hk.nets.ResNet<depth>`` (18, 34, 50, 101, 152, 200)."""
        if depth not in _DEPTHS:
            raise errors.InvalidArgumentError(
                f"ResNetConfig.of_depth: depth={depth!r}; known depths: {sorted(_DEPTHS)}.")
        blocks, bottleneck, channels, projection = _DEPTHS[depth]
        return cls(blocks, num_classes, bottleneck=bottleneck, channels_per_group=channels,
                   use_projection=projection, **kwargs)


class _Block(Module):
    """One residual block (V1 or V2), Haiku's ``BlockV1``/``BlockV2``."""

    def __init__(self, config: ResNetConfig, channels: int, stride: int,
                 use_projection: bool, name: str):
        super().__init__(name=name)
        self.v2, self.use_projection = config.resnet_v2, use_projection

        def bn(name: str, **kw: Any) -> BatchNorm:
            return BatchNorm(config.decay_rate, config.eps, name=name, **kw)

        if use_projection:
            self.proj_conv = Conv2D(channels, 1, stride, with_bias=False, name="shortcut_conv")
            if not self.v2:
                self.proj_batchnorm = bn("shortcut_batchnorm")
        inner = channels // 4 if config.bottleneck else channels
        specs = ([(inner, 1, 1), (inner, 3, stride), (channels, 1, 1)] if config.bottleneck
                 else [(channels, 3, stride), (channels, 3, 1)])
        self.layers = []
        for i, (out, kernel, s) in enumerate(specs):
            conv = Conv2D(out, kernel, s, with_bias=False, name=f"conv_{i}")
            # V1 bottlenecks start their last BatchNorm at scale 0 (Haiku).
            last_zero = config.bottleneck and not self.v2 and i == 2
            norm = bn(f"batchnorm_{i}", scale_init=_zeros if last_zero else None)
            self.layers.append((conv, norm))

    def __call__(self, x: jax.Array, is_training: bool, test_local_stats: bool) -> jax.Array:
        shortcut = x
        if self.v2:
            for i, (conv, norm) in enumerate(self.layers):
                x = jax.nn.relu(norm(x, is_training, test_local_stats))
                if i == 0 and self.use_projection:
                    shortcut = self.proj_conv(x)
                x = conv(x)
            return x + shortcut
        if self.use_projection:
            shortcut = self.proj_batchnorm(self.proj_conv(shortcut), is_training,
                                           test_local_stats)
        last = len(self.layers) - 1
        for i, (conv, norm) in enumerate(self.layers):
            x = norm(conv(x), is_training, test_local_stats)
            if i < last:
                x = jax.nn.relu(x)
        return jax.nn.relu(x + shortcut)


class _BlockGroup(Module):
    """A group of blocks: the first may stride and project, the rest are alike."""

    def __init__(self, config: ResNetConfig, group: int, name: str):
        super().__init__(name=name)
        self.config, self.group = config, group
        channels, stride = config.channels_per_group[group], config.strides[group]
        n = config.blocks_per_group[group]
        self.blocks = [_Block(config, channels, stride, config.use_projection[group],
                              name="block_0")]
        if not config.scan_layers:
            self.blocks += [_Block(config, channels, 1, False, name=f"block_{i}")
                            for i in range(1, n)]

    def __call__(self, x: jax.Array, is_training: bool, test_local_stats: bool) -> jax.Array:
        for block in self.blocks:
            x = block(x, is_training, test_local_stats)
        n = self.config.blocks_per_group[self.group]
        if self.config.scan_layers and n > 1:
            channels = self.config.channels_per_group[self.group]

            def body(x: jax.Array) -> jax.Array:
                block = _Block(self.config, channels, 1, False, name="stacked_blocks")
                return block(x, is_training, test_local_stats)

            x = layer_stack(n - 1)(body)(x)
        return x


class ResNet(Module):
    """A ResNet (V1 or V2), as dm-haiku's ``hk.nets.ResNet``.

    Submodules are built in ``__init__`` with Haiku's names (``initial_conv``,
    ``initial_batchnorm``, ``block_group_<g>``/``block_<b>``/``conv_<i>``,
    ``batchnorm_<i>``, ``shortcut_conv``, ``shortcut_batchnorm``,
    ``final_batchnorm``, ``logits``), so params live at e.g.
    ``~/ResNet_0/__init__/block_group_1_0/__init__/block_0_0/__init__/conv_0_0/__call__/w``.
    With ``scan_layers``, blocks 1.. of each group are one stacked block
    ``block_group_<g>_0/__call__/stacked_blocks_0/...`` (leading axis
    ``blocks - 1``), built under ``mh.lifted.layer_stack``. Logits start at
    zero weights, as Haiku's. Needs ``mh.transform_with_state`` (BatchNorm).

    Example::

      cfg = mh.nets.ResNetConfig(
          blocks_per_group=(1, 1, 1, 1), num_classes=10, bottleneck=False,
          channels_per_group=(8, 16, 16, 16), use_projection=(False, True, True, True),
          initial_conv_channels=8)     # or mh.nets.ResNet18(10)
      f = mh.transform_with_state(lambda x, t: mh.nets.ResNet(cfg)(x, t))
      params, state = f.init(0, jnp.ones([1, 32, 32, 3]), True)
      logits, state = f.apply(params, state, None, jnp.ones([1, 32, 32, 3]), True)
    """

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any):
        """Builds the network.

        Args:
          *args: a ``ResNetConfig``, or its fields (``blocks_per_group,
            num_classes, ...``).
          name: module name, default the class name.
          **kwargs: config fields by name.
        """
        super().__init__(name=name)
        self.config = config = self._config(args, kwargs)
        self.initial_conv = Conv2D(config.initial_conv_channels, config.initial_conv_kernel,
                                   config.initial_conv_stride, with_bias=False,
                                   name="initial_conv")
        if not config.resnet_v2:
            self.initial_batchnorm = BatchNorm(config.decay_rate, config.eps,
                                               name="initial_batchnorm")
        self.block_groups = [_BlockGroup(config, g, name=f"block_group_{g}") for g in range(4)]
        if config.resnet_v2:
            self.final_batchnorm = BatchNorm(config.decay_rate, config.eps,
                                             name="final_batchnorm")
        self.logits = Linear(config.num_classes, w_init=_zeros, name="logits")

    def _config(self, args: tuple, kwargs: dict) -> ResNetConfig:
        return _config.make_config(ResNetConfig, f"mh.nets.{type(self).__name__}", args,
                                   kwargs)

    def __call__(self, x: jax.Array, is_training: bool,
                 test_local_stats: bool = False) -> jax.Array:
        """Logits ``[N, num_classes]`` of images ``x`` ``[N, H, W, C]``.

        Args:
          x: images, channels last.
          is_training: a Python bool: use (and update) batch statistics.
          test_local_stats: when not training, normalise with batch statistics.

        Returns:
          The logits.
        """
        v2 = self.config.resnet_v2
        x = self.initial_conv(x)
        if not v2:
            x = jax.nn.relu(self.initial_batchnorm(x, is_training, test_local_stats))
        x = max_pool(x, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
        for group in self.block_groups:
            x = group(x, is_training, test_local_stats)
        if v2:
            x = jax.nn.relu(self.final_batchnorm(x, is_training, test_local_stats))
        return self.logits(jnp.mean(x, axis=(1, 2)))


class _OfDepth(ResNet):
    """A ResNet of a fixed depth: ``num_classes`` and other config fields by name."""

    _DEPTH = 0

    def _config(self, args: tuple, kwargs: dict) -> ResNetConfig:
        where = f"mh.nets.{type(self).__name__}"
        if len(args) != 1 or isinstance(args[0], ResNetConfig):
            raise errors.InvalidArgumentError(
                f"{where} takes num_classes as its one positional argument, got "
                f"{args!r}. Fix: e.g. {where}(10, resnet_v2=True); for a full config "
                "use mh.nets.ResNet(config).")
        try:
            return ResNetConfig.of_depth(self._DEPTH, args[0], **kwargs)
        except TypeError as e:
            raise errors.InvalidArgumentError(
                f"{where}: {e}. It takes num_classes, then ResNetConfig's fields by "
                "name, except blocks_per_group, bottleneck, channels_per_group and "
                "use_projection (fixed by the depth).") from None


class ResNet18(_OfDepth):
    """ResNet18, as ``hk.nets.ResNet18``: ``ResNet18(num_classes, **fields)``.

    Any other ``ResNetConfig`` field may be given by name (``resnet_v2``,
    ``scan_layers``, ``decay_rate``, ``strides``, ``initial_conv_channels``,
    ...). Layout as :class:`ResNet`.
    """

    _DEPTH = 18


class ResNet34(_OfDepth):
    """ResNet34, as ``hk.nets.ResNet34``; arguments as :class:`ResNet18`."""

    _DEPTH = 34


class ResNet50(_OfDepth):
    """ResNet50 (bottleneck blocks), as ``hk.nets.ResNet50``; arguments as :class:`ResNet18`."""

    _DEPTH = 50


class ResNet101(_OfDepth):
    """ResNet101, as ``hk.nets.ResNet101``; arguments as :class:`ResNet18`."""

    _DEPTH = 101


class ResNet152(_OfDepth):
    """ResNet152, as ``hk.nets.ResNet152``; arguments as :class:`ResNet18`."""

    _DEPTH = 152


class ResNet200(_OfDepth):
    """ResNet200, as ``hk.nets.ResNet200``; arguments as :class:`ResNet18`."""

    _DEPTH = 200
