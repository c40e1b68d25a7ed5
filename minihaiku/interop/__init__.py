"""Checkpoints of other libraries in and out of minihaiku params (``mh.interop``).

dm-haiku param/state dicts both ways (``from_haiku``, ``to_haiku``) and
Hugging Face checkpoint directories (``load_hf``, ``save_hf``).
"""

from minihaiku.interop.haiku import from_haiku, haiku_name, to_haiku
from minihaiku.interop.hf import load_hf, save_hf

__all__ = ["from_haiku", "to_haiku", "haiku_name", "load_hf", "save_hf"]
