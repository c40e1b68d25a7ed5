"""``mh.peft``: low-rank adapters (LoRA) on any model, without touching its code.

:func:`lora` is a ``mh.custom_getter``: every 2-D weight whose path matches
one of its regexes is read as ``w + (alpha / rank) * a @ b``, with the
adapters ``a`` (``[in, rank]``, random) and ``b`` (``[rank, out]``, zeros)
stored next to it at ``<path>/lora_a`` and ``<path>/lora_b``. ``b`` starts at
zero, so a freshly initialised LoRA model computes exactly the base model.
:func:`merge` folds trained adapters back into base-shaped params.

Under ``mh.lifted.layer_stack`` (e.g. ``scan_layers=True``) the getter sees
one layer's ``[in, out]`` slice and the adapters it creates are stacked per
layer like every param there (``[layers, in, rank]``); ``merge`` folds
stacked adapters layer by layer.
"""

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors, scopes
from minihaiku import interceptors as hooks_lib
from minihaiku import params as params_lib

__all__ = ["lora", "merge"]

_A, _B = "lora_a", "lora_b"
_SUFFIXES = (f"/{_A}", f"/{_B}")
_A_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


@contextlib.contextmanager
def lora(rules: str | Sequence[str], rank: int, alpha: float | None = None) -> Iterator[None]:
    """Adds low-rank adapters to the weights whose paths match ``rules``.

    Use it inside the transformed function, around the model call. Only 2-D
    weights get adapters (a matching bias, scale or embedding of another
    rank is read unchanged); under ``layer_stack`` each layer's slice is 2-D.

    Args:
      rules: a regex, or a list of regexes, searched (``re.search``) in each
        param's path, e.g. ``[r"q_proj", r"v_proj"]``.
      rank: the adapters' rank ``r``.
      alpha: the adapters are scaled by ``alpha / rank``; default ``rank``
        (scale 1). Pass the same ``alpha`` to :func:`merge`.

    Example::

      def f(x):
        with mh.peft.lora(r"Linear", rank=2):
          return mh.nn.Linear(3)(x)

      params = mh.transform(f).init(0, jnp.ones((1, 4)))
      assert params["~/Linear_0/__call__/w/lora_a"].shape == (4, 2)
    """
    patterns = _compiled(rules)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise errors.InvalidArgumentError(
            f"mh.peft.lora got rank={rank!r}; it must be a positive int. Fix: e.g. rank=8.")
    scale = _scale(alpha, rank, "mh.peft.lora")

    def getter(next_getter: Callable, value: Any, ctx: hooks_lib.Context) -> Any:
        if (getattr(value, "ndim", 0) != 2 or ctx.path.endswith(_SUFFIXES)
                or not any(p.search(ctx.path) for p in patterns)):
            return next_getter(value)
        n_in, n_out = value.shape
        # The adapters live at `<path>/lora_a`: a name scope named for the
        # weight puts them there (the getter runs in the weight's scope).
        with scopes.name_scope(ctx.name):
            a = params_lib.get_param(_A, (n_in, rank), value.dtype, _A_INIT)
            b = params_lib.get_param(_B, (rank, n_out), value.dtype, jax.nn.initializers.zeros)
        return next_getter(value + (scale * a) @ b)

    with hooks_lib.custom_getter(getter):
        yield


def merge(params: Mapping[str, Any], alpha: float | None = None) -> dict:
    """Folds LoRA adapters into their weights; returns base-shaped params.

    Every ``<path>/lora_a``, ``<path>/lora_b`` pair is folded into ``<path>``
    as ``w + (alpha / rank) * a @ b`` (the rank read from ``a``; stacked
    adapters are folded per layer) and dropped, so the result is what the
    base model, run without :func:`lora`, expects.

    Args:
      params: a flat params dict from a model run under :func:`lora`.
      alpha: the ``alpha`` given to :func:`lora` (default: the rank).

    Returns:
      A new flat dict in ``params``' order, without adapter entries.

    Example::

      def f(x):
        with mh.peft.lora(r"Linear", rank=2):
          return mh.nn.Linear(3)(x)

      params = mh.transform(f).init(0, jnp.ones((1, 4)))
      merged = mh.peft.merge(params)
      assert list(merged) == ["~/Linear_0/__call__/w", "~/Linear_0/__call__/b"]
    """
    merged = {path: value for path, value in params.items() if not path.endswith(_SUFFIXES)}
    for path, a in params.items():
        if not path.endswith(_SUFFIXES[0]):
            continue
        base = path[:-len(_SUFFIXES[0])]
        b = params.get(base + _SUFFIXES[1])
        w = params.get(base)
        if b is None or w is None or a.shape[:-2] != w.shape[:-2] or \
                (a.shape[-2], b.shape[-1]) != w.shape[-2:] or a.shape[-1] != b.shape[-2]:
            raise errors.MismatchError(
                f"mh.peft.merge: adapter '{path}' {getattr(a, 'shape', None)} needs "
                f"'{base}' and '{base}/{_B}' of matching shapes; got "
                f"{getattr(w, 'shape', None)} and {getattr(b, 'shape', None)}. Fix: pass "
                "the complete params of a model run under mh.peft.lora.")
        scale = _scale(alpha, a.shape[-1], "mh.peft.merge")
        delta = jnp.matmul(a.astype(jnp.float32), b.astype(jnp.float32)) * scale
        merged[base] = (w.astype(jnp.float32) + delta).astype(w.dtype)
    return merged


def _scale(alpha: float | None, rank: int, caller: str) -> float:
    if alpha is None:
        return 1.0
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise errors.InvalidArgumentError(
            f"{caller} got alpha={alpha!r}; it must be a number (the adapters are "
            "scaled by alpha / rank). Fix: e.g. alpha=16.")
    return float(alpha) / rank


def _compiled(rules: Any) -> list:
    rules = [rules] if isinstance(rules, (str, re.Pattern)) else rules
    try:
        patterns = [re.compile(r) for r in rules]
    except (TypeError, re.error) as e:
        raise errors.InvalidArgumentError(
            f"mh.peft.lora got rules={rules!r}, which are not regexes ({e}). Fix: pass a "
            "regex or a list of regexes searched in param paths, e.g. "
            "[r'q_proj', r'v_proj'].") from e
    if not patterns:
        raise errors.InvalidArgumentError(
            "mh.peft.lora got no rules, so no weight would get adapters. Fix: pass "
            "regexes for the weights to adapt, e.g. [r'q_proj', r'v_proj'].")
    return patterns
