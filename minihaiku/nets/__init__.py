"""Reference networks built on minihaiku modules, each with a config dataclass."""

from minihaiku.nets.cache import init_cache
from minihaiku.nets.gpt2 import GPT2, GPT2Config
from minihaiku.nets.llama import Llama, LlamaConfig

__all__ = ["GPT2", "GPT2Config", "Llama", "LlamaConfig", "init_cache"]
