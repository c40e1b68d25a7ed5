"""Mixed precision: per-module dtype policies, built on the interceptors.

A :class:`Policy` says which dtype params are stored in, which dtype a
module's methods compute in, and which dtype they return. ``set_policy``
attaches one to a ``Module`` subclass or to a regex searched in module paths.
While a module with a policy runs, its floating inputs are cast to the
compute dtype and its floating outputs to the output dtype; params created
inside it (submodules included) are stored in the param dtype and read cast
to the compute dtype. Submodules without a policy of their own inherit the
enclosing policy for their params, and leave their inputs and outputs alone.

Modules that declare ``keeps_float32`` (the norms: their statistics lose too
much in bfloat16, Haiku's mixed-precision practice) inside a module with a
policy keep float32 params and compute in float32, returning the enclosing
compute dtype, unless a policy is set for them explicitly.

Policies plug into the core's one interceptor pipeline
(:func:`minihaiku.interceptors.register`): a param-dtype rule (so a param is
created in, and checked against, its policy's dtype), a getter and a method
interceptor. They never touch a param outside a module with a policy.
"""

import functools
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import errors
from minihaiku import interceptors as hooks_lib
from minihaiku.module import Module

_KEYS = {"params": "param_dtype", "compute": "compute_dtype", "output": "output_dtype"}


def _dtype(value: Any, where: str) -> np.dtype:
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise errors.InvalidArgumentError(
            f"{where}: {value!r} is not a dtype. Fix: use e.g. 'float32', "
            "'bfloat16', 'float16' or jnp.bfloat16.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise errors.InvalidArgumentError(
            f"{where}: {dtype.name} is not a floating dtype; a policy only changes "
            "floating params and computations. Fix: use e.g. 'float32', 'bfloat16' "
            "or 'float16' (quantise with a custom_getter instead).")
    return dtype


class Policy:
    """Which dtypes a module stores params in, computes in and returns.

    Example::

      policy = mh.precision.Policy(jnp.float32, jnp.bfloat16, jnp.float32)
      assert policy == mh.precision.Policy.parse(
          "params=float32,compute=bfloat16,output=float32")
    """

    __slots__ = ("param_dtype", "compute_dtype", "output_dtype")

    def __init__(self, param_dtype: Any, compute_dtype: Any, output_dtype: Any):
        self.param_dtype = _dtype(param_dtype, "Policy param_dtype")
        self.compute_dtype = _dtype(compute_dtype, "Policy compute_dtype")
        self.output_dtype = _dtype(output_dtype, "Policy output_dtype")

    @classmethod
    def parse(cls, text: str) -> "Policy":
        """Reads ``"params=float32,compute=bfloat16,output=float32"``.

        A missing ``compute`` or ``output`` defaults to float32.
        """
        fields = {"params": "float32", "compute": "float32", "output": "float32"}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in fields:
                raise errors.InvalidArgumentError(
                    f"Policy string {text!r}: {item!r} is not 'key=dtype' with key "
                    f"one of {list(fields)}. Fix: e.g. "
                    "'params=float32,compute=bfloat16,output=float32'.")
            fields[key.strip()] = value.strip()
        return cls(fields["params"], fields["compute"], fields["output"])

    def _tuple(self) -> tuple:
        return (self.param_dtype, self.compute_dtype, self.output_dtype)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Policy) and self._tuple() == other._tuple()

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __repr__(self) -> str:
        return (f"Policy(params={self.param_dtype.name}, compute={self.compute_dtype.name}, "
                f"output={self.output_dtype.name})")


_CLASSES: dict = {}
_PATHS: dict = {}  # regex text -> (compiled, policy); later entries win


def _as_policy(policy: Policy | str) -> Policy:
    if isinstance(policy, str):
        return Policy.parse(policy)
    if not isinstance(policy, Policy):
        raise errors.InvalidArgumentError(
            f"mh.precision.set_policy: policy must be a Policy or a string like "
            f"'params=float32,compute=bfloat16,output=float32', got {policy!r}.")
    return policy


def _check_target(target: Any) -> None:
    if isinstance(target, type) and issubclass(target, Module):
        return
    if isinstance(target, str):
        try:
            re.compile(target)
        except re.error as e:
            raise errors.InvalidArgumentError(
                f"mh.precision: target {target!r} is not a valid regex ({e}). Fix: "
                "escape special characters, e.g. re.escape('~/enc(1)'), or pass a "
                "mh.Module subclass.") from None
        return
    raise errors.InvalidArgumentError(
        f"mh.precision: target must be a mh.Module subclass or a regex searched in "
        f"module paths, got {target!r}. Fix: e.g. set_policy(mh.nn.MLP, policy) or "
        "set_policy(r'encoder/', policy).")


def set_policy(target: type | str, policy: Policy | str | None) -> None:
    """Attaches ``policy`` to a ``Module`` subclass or a module-path regex.

    Policies are global (all threads, all transforms); set them before
    tracing, since a jitted function keeps what it was traced with, and a
    run in progress keeps the policies it started with.
    ``policy=None`` removes the target's policy. A path regex is searched in
    the module's path (``~/MLP_0/__call__/Linear_1``) and wins over a class
    policy; of several matching regexes, the last set wins. A bad target or
    policy is refused before anything changes.

    Example::

      mh.precision.set_policy(mh.nn.MLP, "params=float32,compute=bfloat16,output=float32")
      mh.precision.clear_policies()
    """
    _check_target(target)
    checked = None if policy is None else _as_policy(policy)
    table = _PATHS if isinstance(target, str) else _CLASSES
    table.pop(target, None)
    if checked is not None:
        table[target] = (re.compile(target), checked) if isinstance(target, str) else checked
    _own_policy.cache_clear()
    _register(bool(_CLASSES or _PATHS))


def get_policy(target: type | str) -> Policy | None:
    """The policy set for exactly ``target`` (a class or regex), or ``None``."""
    _check_target(target)
    if isinstance(target, str):
        entry = _PATHS.get(target)
        return None if entry is None else entry[1]
    return _CLASSES.get(target)


def clear_policies() -> None:
    """Removes every policy."""
    _CLASSES.clear()
    _PATHS.clear()
    _own_policy.cache_clear()
    _register(False)


@functools.lru_cache(maxsize=4096)
def _own_policy(cls: type, path: str) -> Policy | None:
    for regex, policy in reversed(list(_PATHS.values())):
        if regex.search(path):
            return policy
    for c in cls.__mro__:
        policy = _CLASSES.get(c)
        if policy is not None:
            return policy
    return None


def _policies() -> tuple:
    """(policy in force, own policy of the innermost module) for the running method."""
    policy = own = None
    for module, _ in hooks_lib.running_methods():
        own = _own_policy(type(module), module.module_path)  # type: ignore[arg-type]
        if own is None and policy is not None and module.keeps_float32:
            own = Policy(jnp.float32, jnp.float32, policy.compute_dtype)
        policy = own or policy
    return policy, own


def _floating(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating)


def _cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if _floating(x) and x.dtype != dtype else x, tree)


def _method(method, args, kwargs, ctx):
    own = _policies()[1]
    if own is None:
        return method(*args, **kwargs)
    args, kwargs = _cast((args, kwargs), own.compute_dtype)
    return _cast(method(*args, **kwargs), own.output_dtype)


def _param_dtype(dtype, ctx):
    policy = _policies()[0]
    if policy is not None and jnp.issubdtype(dtype, jnp.floating):
        return policy.param_dtype
    return dtype


def _getter(next_getter, value, ctx):
    policy = _policies()[0]
    if policy is not None and _floating(value) and value.dtype != policy.compute_dtype:
        value = value.astype(policy.compute_dtype)
    return next_getter(value)


def _register(on: bool) -> None:
    for kind, fn in (("methods", _method), ("param_dtypes", _param_dtype),
                     ("param_getters", _getter)):
        if on:
            hooks_lib.register(kind, fn)
        else:
            hooks_lib.unregister(kind, fn)
