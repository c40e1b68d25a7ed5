"""Checkpoints of other libraries in and out of minihaiku params."""

from minihaiku.interop.hf import load_hf, save_hf

__all__ = ["load_hf", "save_hf"]
