"""What the tests share: one ``assert_close`` and one test ``Linear``.

The dm-haiku comparison is in :mod:`helpers.haiku_compare` (imported on its
own, so tests that never touch dm-haiku do not import it).
"""

from helpers.close import assert_close
from helpers.modules import Linear

__all__ = ["assert_close", "Linear"]
