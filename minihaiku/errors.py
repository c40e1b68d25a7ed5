"""The errors minihaiku raises.

Every error is a :class:`MiniHaikuError`, itself a ``ValueError``, so callers
can catch all of them at once. There is one subclass per kind of misuse, so
tests and users can tell the kinds apart; each message names the path, the
shapes or the call involved, and the fix. Raise the most specific class; the
bare base class is for nothing.
"""


class MiniHaikuError(ValueError):
    """Base class of every error raised by minihaiku."""


class NotInTransformError(MiniHaikuError):
    """A minihaiku function that needs a frame was called outside a transform."""


class MissingParamError(MiniHaikuError):
    """``apply`` asked for a param that ``init`` never created."""


class MissingStateError(MiniHaikuError):
    """``apply`` asked for (or set) a state entry that ``init`` never created."""


class MismatchError(MiniHaikuError):
    """A requested shape or dtype differs from the stored value."""


class NoRngError(MiniHaikuError):
    """A key was drawn but the transformed function was given no rng."""


class InvalidRngError(MiniHaikuError):
    """An ``rng``, seed or key given by the user is not a valid key."""


class StateNotAllowedError(MiniHaikuError):
    """State was used under ``mh.transform`` instead of ``transform_with_state``."""


class UnliftedTransformError(MiniHaikuError):
    """A raw JAX transform wraps code that touches params, state or keys."""


class InvalidNameError(MiniHaikuError):
    """A param, state or module name that could alias another path."""


class InvalidArgumentError(MiniHaikuError):
    """An argument to a minihaiku function has the wrong type or value.

    E.g. a shape that is not a tuple of ints, an initializer with the other
    signature (params take ``init(key, shape, dtype)``, state ``init(shape,
    dtype)``), ``num_layers`` that is not a positive int, ``in_axes`` that do
    not match the arguments.
    """


class ModuleInputError(MiniHaikuError):
    """A module of ``mh.nn`` was built or called with input it cannot take.

    Wrong rank, sizes, axes, paddings or dtypes; the message names the
    module's path.
    """


class ModuleReuseError(MiniHaikuError):
    """A module built in one run of ``init``/``apply`` was called in another."""


class LiftedBodyError(MiniHaikuError):
    """The body given to an ``mh.lifted`` transform broke one of its rules.

    E.g. it created params only while traced, changed a carried state's type,
    drew a key in ``while_loop``'s ``cond_fun``, or its branches returned
    different shapes.
    """


class CheckpointError(MiniHaikuError):
    """``mh.io`` could not save or load a file (refused tree, corrupt or
    foreign file, mismatch with ``like``)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """``mh.io.load`` was given a path where no file exists."""


class ShardingError(MiniHaikuError):
    """A sharding rule does not fit a param or the mesh."""


class InterceptorError(MiniHaikuError):
    """A custom creator, getter, setter or method interceptor misbehaved."""


class NonFiniteError(MiniHaikuError):
    """``mh.debug.check_finite`` found a NaN or an infinity; the message names the module."""


class ModuleDefinitionError(MiniHaikuError):
    """A ``Module`` subclass is written wrongly, e.g. its ``__init__`` never
    calls ``super().__init__``."""
