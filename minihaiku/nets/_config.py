"""How a net takes its configuration: a config dataclass, or its fields as arguments."""

import dataclasses
from typing import Any, TypeVar

from minihaiku import errors

C = TypeVar("C")


def make_config(cls: type[C], net: str, args: tuple, kwargs: dict) -> C:
    """``cls`` from ``args``/``kwargs``: one instance passed as is, else its fields.

    So ``ResNet(ResNetConfig(...))`` and ``MLP([64, 10], activate_final=True)``
    both work; a bad field is reported with the net's name and the fix.
    """
    if len(args) == 1 and not kwargs and isinstance(args[0], cls):
        return args[0]
    if args and isinstance(args[0], cls):
        raise errors.InvalidArgumentError(
            f"{net} got a {cls.__name__} and more arguments {args[1:]} {kwargs}. Fix: "
            f"pass either the config alone or its fields (use "
            f"dataclasses.replace(config, ...) to change a field).")
    try:
        return cls(*args, **kwargs)
    except TypeError as e:
        fields = ", ".join(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        raise errors.InvalidArgumentError(
            f"{net} got arguments it does not take: {e}. Its fields ({cls.__name__}): "
            f"{fields}.") from None


def freeze(config: Any, *names: str) -> None:
    """Stores the sequence fields ``names`` of a frozen dataclass as tuples."""
    for name in names:
        value = getattr(config, name)
        try:
            object.__setattr__(config, name, tuple(value))
        except TypeError:
            raise errors.InvalidArgumentError(
                f"{type(config).__name__}: {name} must be a sequence, got "
                f"{value!r}.") from None


def check(ok: bool, config: Any, message: str) -> None:
    """An ``InvalidArgumentError`` naming the config class unless ``ok``."""
    if not ok:
        raise errors.InvalidArgumentError(f"{type(config).__name__}: {message}")
