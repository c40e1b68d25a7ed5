"""minihaiku: a small, fast, Haiku-style neural-network library for JAX.

``import minihaiku as mh``; see README.md for a tour and docs/api.md for the
reference of every public name.
"""

from minihaiku import (
    config,  # noqa: F401  (mh.config)
    data,  # noqa: F401  (mh.data)
    debug,  # noqa: F401  (mh.debug)
    interop,  # noqa: F401  (mh.interop)
    io,  # noqa: F401  (mh.io)
    lifted,  # noqa: F401  (mh.lifted)
    nets,  # noqa: F401  (mh.nets)
    nn,  # noqa: F401  (mh.nn)
    peft,  # noqa: F401  (mh.peft)
    precision,  # noqa: F401  (mh.precision)
    sharding,  # noqa: F401  (mh.sharding)
)
from minihaiku._cost import CostReport, ModuleCost, cost
from minihaiku._export import export
from minihaiku._export_onnx import export_onnx
from minihaiku._lift import LiftWithStateUpdater, lift, lift_with_state
from minihaiku._multi_transform import (
    MultiTransformed,
    MultiTransformedWithState,
    multi_transform,
    multi_transform_with_state,
)
from minihaiku._summary import summary
from minihaiku._transform import (
    Transformed,
    TransformedWithState,
    inside_transform,
    running_init,
    transform,
    transform_with_state,
    without_apply_rng,
)
from minihaiku.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    InterceptorError,
    InvalidArgumentError,
    InvalidNameError,
    InvalidRngError,
    LiftedBodyError,
    MiniHaikuError,
    MismatchError,
    MissingParamError,
    MissingStateError,
    ModuleDefinitionError,
    ModuleInputError,
    ModuleReuseError,
    NonFiniteError,
    NoRngError,
    NotInTransformError,
    ShardingError,
    StateNotAllowedError,
    UnliftedTransformError,
)
from minihaiku.interceptors import (
    custom_creator,
    custom_getter,
    custom_setter,
    intercept_methods,
)
from minihaiku.module import Module, module_method
from minihaiku.params import get_param
from minihaiku.rng import PRNGSequence, maybe_next_rng_key, next_rng_key, next_rng_keys, with_rng
from minihaiku.scopes import name_scope, to_module
from minihaiku.state import get_state, set_state

__version__ = "0.1.0"

__all__ = [
    # Sub-packages.
    "config", "data", "debug", "interop", "io", "lifted", "nets", "nn", "peft", "precision",
    "sharding",
    # Errors.
    "MiniHaikuError", "CheckpointError", "CheckpointNotFoundError",
    "InterceptorError", "InvalidArgumentError", "InvalidNameError",
    "InvalidRngError", "LiftedBodyError", "MismatchError", "MissingParamError",
    "MissingStateError", "ModuleDefinitionError", "ModuleInputError",
    "ModuleReuseError", "NoRngError", "NonFiniteError", "NotInTransformError", "ShardingError",
    "StateNotAllowedError", "UnliftedTransformError",
    # Transforms.
    "Transformed", "TransformedWithState", "transform", "transform_with_state",
    "without_apply_rng", "running_init", "inside_transform", "MultiTransformed",
    "MultiTransformedWithState", "multi_transform", "multi_transform_with_state", "lift",
    "lift_with_state", "LiftWithStateUpdater",
    # Modules, params, state, keys.
    "Module", "module_method", "to_module", "name_scope", "get_param", "get_state", "set_state",
    "PRNGSequence", "next_rng_key", "next_rng_keys", "maybe_next_rng_key",
    "with_rng",
    # Interceptors.
    "custom_creator", "custom_getter", "custom_setter", "intercept_methods",
    # Tools.
    "summary", "cost", "CostReport", "ModuleCost", "export", "export_onnx",
]
