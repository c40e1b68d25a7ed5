"""Params from other libraries (``mh.interop``): dm-haiku dicts both ways."""

from minihaiku.interop.haiku import from_haiku, haiku_name, to_haiku

__all__ = ["from_haiku", "to_haiku", "haiku_name"]
