"""Reference networks (``mh.nets``), each a ``Module`` built from a config dataclass.

``MLP``, ``ResNet`` (``ResNet18`` ... ``ResNet200``), ``MobileNetV1``,
``VectorQuantizer``, ``VectorQuantizerEMA`` compute what dm-haiku's
``hk.nets`` twins compute, with submodules named as Haiku names them, so
``mh.interop.from_haiku`` maps their params structurally.
``VisionTransformer`` has no Haiku original. ``GPT2`` and ``Llama`` (and
Mistral/Qwen2-style variants of its config) load Hugging Face checkpoints
with ``mh.interop.load_hf``.
"""

from minihaiku.nets.cache import init_cache
from minihaiku.nets.gpt2 import GPT2, GPT2Config
from minihaiku.nets.llama import Llama, LlamaConfig
from minihaiku.nets.mlp import MLP, MLPConfig
from minihaiku.nets.mobilenet import MobileNetV1, MobileNetV1Block, MobileNetV1Config
from minihaiku.nets.resnet import (
    ResNet,
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
    ResNet200,
    ResNetConfig,
)
from minihaiku.nets.vector_quantizer import (
    VectorQuantizer,
    VectorQuantizerConfig,
    VectorQuantizerEMA,
    VectorQuantizerEMAConfig,
)
from minihaiku.nets.vision_transformer import (
    EncoderBlock,
    VisionTransformer,
    VisionTransformerConfig,
)

__all__ = [
    "GPT2", "GPT2Config", "Llama", "LlamaConfig", "init_cache",
    "MLP", "MLPConfig", "MobileNetV1", "MobileNetV1Block", "MobileNetV1Config",
    "ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet200",
    "ResNetConfig", "VectorQuantizer", "VectorQuantizerConfig", "VectorQuantizerEMA",
    "VectorQuantizerEMAConfig", "EncoderBlock", "VisionTransformer",
    "VisionTransformerConfig",
]
