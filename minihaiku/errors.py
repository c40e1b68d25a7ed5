"""The errors minihaiku raises.

Every error is a :class:`MiniHaikuError`, itself a ``ValueError``, so callers
can catch all of them at once. The subclasses let tests and users tell the
kinds apart; each message names the path, the shapes or the call involved, and
the fix.
"""


class MiniHaikuError(ValueError):
    """Base class of every error raised by minihaiku."""


class NotInTransformError(MiniHaikuError):
    """A minihaiku function that needs a frame was called outside a transform."""


class MissingParamError(MiniHaikuError):
    """``apply`` asked for a param or state that ``init`` never created."""


class MismatchError(MiniHaikuError):
    """A requested shape or dtype differs from the stored value."""


class NoRngError(MiniHaikuError):
    """A key was drawn but the transformed function was given no rng."""


class StateNotAllowedError(MiniHaikuError):
    """State was used under ``mh.transform`` instead of ``transform_with_state``."""


class UnliftedTransformError(MiniHaikuError):
    """A raw JAX transform wraps code that touches params, state or keys."""
