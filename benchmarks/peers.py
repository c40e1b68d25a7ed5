"""Optional peers (dm-haiku, flax.linen): imported only by the benchmarks."""

import importlib


def optional(module: str):
    """The module, or ``None`` when the ``bench`` extra is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


hk = optional("haiku")
linen = optional("flax.linen")
