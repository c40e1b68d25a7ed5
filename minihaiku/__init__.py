"""minihaiku: a small, fast, Haiku-style neural-network library for JAX.

``import minihaiku as mh``; see README.md for a tour and ``shared/API.md`` for
the contract.
"""

from minihaiku import config  # noqa: F401  (mh.config)
from minihaiku import data  # noqa: F401  (mh.data)
from minihaiku import io  # noqa: F401  (mh.io)
from minihaiku import lifted  # noqa: F401  (mh.lifted)
from minihaiku import nn  # noqa: F401  (mh.nn)
from minihaiku import precision  # noqa: F401  (mh.precision)
from minihaiku import sharding  # noqa: F401  (mh.sharding)
from minihaiku.errors import CheckpointError
from minihaiku.errors import CheckpointNotFoundError
from minihaiku.errors import InterceptorError
from minihaiku.errors import InvalidArgumentError
from minihaiku.errors import InvalidNameError
from minihaiku.errors import InvalidRngError
from minihaiku.errors import LiftedBodyError
from minihaiku.errors import MiniHaikuError
from minihaiku.errors import MissingStateError
from minihaiku.errors import ModuleInputError
from minihaiku.errors import ModuleReuseError
from minihaiku.errors import ShardingError
from minihaiku.errors import MismatchError
from minihaiku.errors import MissingParamError
from minihaiku.errors import NoRngError
from minihaiku.errors import NotInTransformError
from minihaiku.errors import StateNotAllowedError
from minihaiku.errors import UnliftedTransformError
from minihaiku.interceptors import custom_creator
from minihaiku.interceptors import custom_getter
from minihaiku.interceptors import custom_setter
from minihaiku.interceptors import intercept_methods
from minihaiku.module import Module
from minihaiku.module import module_method
from minihaiku.params import get_param
from minihaiku.rng import PRNGSequence
from minihaiku.rng import maybe_next_rng_key
from minihaiku.rng import next_rng_key
from minihaiku.state import get_state
from minihaiku.state import set_state
from minihaiku.summary import summary
from minihaiku.transform import Transformed
from minihaiku.transform import TransformedWithState
from minihaiku.transform import inside_transform
from minihaiku.transform import running_init
from minihaiku.transform import transform
from minihaiku.transform import transform_with_state
from minihaiku.transform import without_apply_rng

__version__ = "0.1.0"

__all__ = [
    "MiniHaikuError", "MismatchError", "MissingParamError", "NoRngError",
    "NotInTransformError", "StateNotAllowedError", "UnliftedTransformError",
    "Module", "module_method", "get_param", "PRNGSequence",
    "maybe_next_rng_key", "next_rng_key", "get_state", "set_state",
    "Transformed", "TransformedWithState", "inside_transform", "running_init",
    "transform", "transform_with_state", "without_apply_rng", "io", "sharding", "summary",
]
