"""Checking and normalising the arguments shared by the convolutions.

Kernel sizes, strides and rates broadcast an int to every spatial dim; a data
format names where the channels are; a padding is resolved once, at
construction, to what ``jax.lax`` takes. A bad argument is an
``InvalidArgumentError``, an input that does not fit a ``ModuleInputError``,
each naming the module and the fix.
"""

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from minihaiku import errors
from minihaiku.nn import _layer_args
from minihaiku.nn._layer_args import is_int as _is_int
from minihaiku.nn._layer_args import where

Padding = (str | Sequence[tuple[int, int]] | tuple[int, int]
           | Callable[[int], tuple[int, int]] | Sequence[Callable[[int], tuple[int, int]]])

_LAST = re.compile(r"^N[^C]*C$")
_FIRST = re.compile(r"^NC[^C]*$")
_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def replicate(module: Any, value: Any, n: int, what: str,
              minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int or ``n`` ints, each ``>= minimum``) as a tuple of ``n`` ints."""
    values = (value,) * n if _is_int(value) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (values is None or len(values) != n
            or not all(_is_int(v) and v >= minimum for v in values)):
        raise errors.InvalidArgumentError(
            f"{where(module)} got {what}={value!r}; it needs an int >= {minimum} or "
            f"{n} of them (one per spatial dim). Fix: e.g. {what}={max(minimum, 1)} "
            f"or {what}={(max(minimum, 1),) * n}.")
    return values


def channels_last(module: Any, data_format: str | None, n: int) -> tuple[bool, str]:
    """Whether ``data_format`` puts channels last, and the format's default spelling."""
    default = "N" + _SPATIAL.get(n, "S" * n) + "C"
    if data_format is None or data_format == "channels_last":
        return True, default
    if data_format == "channels_first":
        return False, "NC" + default[1:-1]
    if isinstance(data_format, str) and len(data_format) == n + 2:
        if _LAST.match(data_format):
            return True, data_format
        if _FIRST.match(data_format):
            return False, data_format
    raise errors.InvalidArgumentError(
        f"{where(module)} got data_format={data_format!r}; for {n} spatial dim(s) it "
        f"must be channels-last like {default!r} (the default) or channels-first like "
        f"{'NC' + default[1:-1]!r} ('channels_last'/'channels_first' also work).")


def fixed_dims(base: type, n: int) -> Callable[..., None]:
    """The ``__init__`` of a subclass of ``base`` with ``num_spatial_dims=n`` bound.

    ``class Conv2D(ConvND): __init__ = fixed_dims(ConvND, 2)``: the arguments
    are forwarded to ``base.__init__``, and the signature that
    ``inspect.signature`` and ``help`` show is the base's without
    ``num_spatial_dims``, so it is written once.
    """
    init: Callable[..., None] = vars(base)["__init__"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if "num_spatial_dims" in kwargs:
            raise errors.InvalidArgumentError(
                f"{type(self).__name__} fixes num_spatial_dims={n}; it got "
                f"num_spatial_dims={kwargs['num_spatial_dims']!r}. Fix: drop it, or "
                f"use {base.__name__}.")
        init(self, n, *args, **kwargs)

    signature = inspect.signature(init)
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name != "num_spatial_dims"])
    __init__.__doc__ = (f"Builds the layer: the arguments of :class:`{base.__name__}` "
                        f"but num_spatial_dims, which is {n}.")
    return __init__


class Layout(NamedTuple):
    """Where a convolution's channels are, and the shapes that follow."""
    channels_last: bool
    data_format: str
    dimension_numbers: jax.lax.ConvDimensionNumbers
    bias_shape: tuple[int, ...]   # [out], or [out, 1, ...] channels-first as Haiku


def layout(module: Any, n: int, output_channels: int, with_bias: bool, b_init: Any,
           data_format: str | None, transpose: bool) -> Layout:
    """The :class:`Layout` of a convolution; ``b_init`` with ``with_bias=False`` is an error."""
    _layer_args.check_bias_init(module, with_bias, b_init)
    last, spelled = channels_last(module, data_format, n)
    return Layout(last, spelled, dimension_numbers(n, last, transpose),
                  (output_channels,) + (() if last else (1,) * n))


def dimension_numbers(n: int, last: bool, transpose: bool) -> jax.lax.ConvDimensionNumbers:
    """Dimension numbers for inputs with channels last/first and Haiku's kernel layout.

    The kernel is ``[*spatial, in, out]`` (``[*spatial, out, in]`` when
    ``transpose``), so weights copy 1:1 from Haiku.
    """
    spatial = tuple(range(1, n + 1)) if last else tuple(range(2, n + 2))
    image = (0, n + 1) + spatial if last else (0, 1) + spatial
    io = (n + 1, n) if transpose else (n, n + 1)
    kernel = (io[1], io[0]) + tuple(range(n))
    return jax.lax.ConvDimensionNumbers(lhs_spec=image, rhs_spec=kernel, out_spec=image)


def _pair(p: Any) -> bool:
    return (isinstance(p, (tuple, list)) and len(p) == 2
            and all(_is_int(v) and v >= 0 for v in p))


def resolve_padding(module: Any, padding: Any, kernel: Sequence[int], rate: Sequence[int],
                    allow_callable: bool = True) -> str | tuple[tuple[int, int], ...]:
    """``padding`` as ``"SAME"``/``"VALID"`` or one ``(lo, hi)`` pair per spatial dim.

    A callable (or one per dim) gets the effective kernel size
    ``(k - 1) * rate + 1`` and returns ``(lo, hi)``, as Haiku's ``hk.pad``.
    """
    n = len(kernel)
    if isinstance(padding, str):
        if padding.upper() in ("SAME", "VALID"):
            return padding.upper()
    elif allow_callable and (callable(padding) or (
            isinstance(padding, (tuple, list)) and padding and all(map(callable, padding)))):
        fns = [padding] * n if callable(padding) else list(padding)
        if len(fns) == 1:
            fns = fns * n
        if len(fns) == n:
            sizes = [(k - 1) * r + 1 for k, r in zip(kernel, rate, strict=True)]
            pads = tuple(tuple(fn(s)) for fn, s in zip(fns, sizes, strict=True))
            if all(map(_pair, pads)):
                return pads
    elif isinstance(padding, (tuple, list)):
        if _pair(padding):
            return (tuple(padding),) * n
        if len(padding) in (1, n) and all(map(_pair, padding)):
            pads = tuple(tuple(p) for p in padding)
            return pads * n if len(pads) == 1 else pads
    raise errors.InvalidArgumentError(
        f"{where(module)} got padding={padding!r}; it must be 'SAME', 'VALID', one "
        f"(lo, hi) pair of ints >= 0 for every spatial dim, {n} such pairs"
        + (", or a callable mapping the effective kernel size to (lo, hi)"
           if allow_callable else "") + ". Fix: e.g. padding='SAME' or "
        f"padding={((1, 1),) * n}.")


def check_input(module: Any, x: jax.Array, n: int,
                batched_only: bool = False) -> tuple[jax.Array, bool]:
    """``x`` with a batch axis, and whether one was added (Haiku's unbatched inputs).

    ``x`` must be floating (the params take its dtype) and of rank ``n + 2``
    (or ``n + 1`` unbatched, unless ``batched_only``).
    """
    _layer_args.check_floating(module, x)
    ranks = (n + 2,) if batched_only else (n + 1, n + 2)
    if x.ndim not in ranks:
        raise errors.ModuleInputError(
            f"{where(module)} got an input of shape {x.shape} (rank {x.ndim}); it needs "
            f"rank {' or '.join(map(str, ranks))}: [batch, *{n} spatial dims, channels] "
            "(channels where data_format says)"
            + ("" if batched_only else " or the same without batch")
            + ". Fix: reshape the input or use the Conv of matching dimension.")
    if x.ndim == n + 1:
        return x[None], True
    return x, False
