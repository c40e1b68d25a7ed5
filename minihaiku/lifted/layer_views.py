"""Per-layer views of ``layer_stack`` params, and optimizers that see layers.

``layer_stack(n)`` stores each param at the path the layer would use alone,
with a leading axis of n: nothing in the path says it is stacked. So the rule
here is explicit: an entry is a stack of ``num_layers`` layers when its
leading axis is ``num_layers`` (and, if ``where`` is given, its path matches
``where``). Pass ``where`` when another param's first axis happens to equal
the depth.

The view of layer i of ``~/Block_0/__call__/w`` is ``~/layer_i/Block_0/__call__/w``:
the ``layer_i`` segment goes right after the root ``~``, after any
``layer_j`` segments already there, so nested stacks unstack outer first
(``~/layer_2/layer_0/...`` is layer 2 of the outer stack, layer 0 of the
inner one) and :func:`stack` undoes the last :func:`unstack`. For a
``layer_stack`` called at the top level these are the paths of the same
model unrolled with ``mh.name_scope(f"layer_{i}")`` around each layer, so
the views load into (and come from) the unrolled model as they are. A model whose
own top-level module is named ``layer`` would collide: rename it.
"""

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from minihaiku import errors

_LAYER = re.compile(r"layer_(\d+)")

Where = str | re.Pattern | Callable[[str, Any], bool] | None


def unstack(params: Mapping[str, Any], num_layers: int, *, where: Where = None) -> dict:
    """Splits each stacked entry into one entry per layer, at ``~/layer_i/...``.

    Args:
      params: a flat dict of params (or state, grads, updates).
      num_layers: the depth of the ``layer_stack``: entries with this leading
        axis are split.
      where: optionally restrict the split to paths where this regex is
        found (or for which ``where(path, value)`` is true).

    Returns:
      A flat dict: the other entries unchanged, each stacked entry replaced by
      ``num_layers`` slices.

    Example::

      stacked = {"~/Block_0/__call__/w": jnp.zeros((3, 4, 4)), "~/head/b": jnp.zeros(2)}
      views = mh.lifted.unstack(stacked, 3)   # '~/layer_0/Block_0/__call__/w', ...
      assert mh.lifted.stack(views).keys() == stacked.keys()
    """
    n = _check_num_layers(num_layers)
    match = _matcher(where)
    out: dict = {}
    for path, value in params.items():
        if not _is_stacked(path, value, n, match):
            out[path] = value
            continue
        head, tail = _split(path)
        for i in range(n):
            out[f"{head}/layer_{i}/{tail}" if tail else f"{head}/layer_{i}"] = value[i]
    return out


def stack(views: Mapping[str, Any]) -> dict:
    """Undoes :func:`unstack`: joins ``~/layer_0/...`` ... ``~/layer_{n-1}/...`` into one entry.

    The last ``layer_i`` segment after the root is removed; the layers of
    each path must be ``0 .. n-1`` with equal shapes and dtypes.

    Example::

      views = {"~/layer_0/w": jnp.zeros(2), "~/layer_1/w": jnp.ones(2)}
      print(mh.lifted.stack(views)["~/w"].shape)   # (2, 2)
    """
    groups: dict = {}
    order: list = []
    for path, value in views.items():
        base, index = _layer_of(path)
        key = path if base is None else base
        if key not in groups:
            groups[key] = {}
            order.append(key)
        groups[key][index] = value
    out = {}
    for key in order:
        layers = groups[key]
        if None in layers:
            out[key] = layers[None]
            continue
        out[key] = _joined(key, layers)
    return out


def _joined(key: str, layers: dict) -> Any:
    n = len(layers)
    if sorted(layers) != list(range(n)):
        raise errors.InvalidArgumentError(
            f"mh.lifted.stack: the per-layer entries of '{key}' are layers "
            f"{sorted(layers)}; a stack needs layer_0 .. layer_{n - 1} with none missing. "
            "Fix: pass every layer's entry (as mh.lifted.unstack returns them).")
    first = layers[0]
    for i in range(n):
        shape, dtype = jnp.shape(layers[i]), jnp.result_type(layers[i])
        if shape != jnp.shape(first) or dtype != jnp.result_type(first):
            raise errors.MismatchError(
                f"mh.lifted.stack: layer_{i} of '{key}' has shape {shape} and dtype {dtype}, "
                f"layer_0 has {jnp.shape(first)} and {jnp.result_type(first)}. Fix: every "
                "layer of a stack needs the same shape and dtype.")
    return jnp.stack([layers[i] for i in range(n)])


def _split(path: str) -> tuple[str, str]:
    """``~/layer_2/Block_0/w`` -> (``~/layer_2``, ``Block_0/w``): where a new segment goes."""
    parts = path.split("/")
    cut = 1
    while cut < len(parts) - 1 and _LAYER.fullmatch(parts[cut]):
        cut += 1
    return "/".join(parts[:cut]), "/".join(parts[cut:])


def _layer_of(path: str) -> tuple[str | None, int | None]:
    """(path without its last leading ``layer_i``, i), or (None, None) for other paths."""
    parts = path.split("/")
    last = None
    i = 1
    while i < len(parts) - 1 and _LAYER.fullmatch(parts[i]):
        last = i
        i += 1
    if last is None:
        return None, None
    index = int(_LAYER.fullmatch(parts[last]).group(1))  # type: ignore[union-attr]
    return "/".join(parts[:last] + parts[last + 1:]), index


def _matcher(where: Where) -> Callable[[str, Any], bool]:
    if where is None:
        return lambda path, value: True
    if callable(where):
        return where
    if isinstance(where, (str, re.Pattern)):
        pattern = re.compile(where)
        return lambda path, value: pattern.search(path) is not None
    raise errors.InvalidArgumentError(
        f"mh.lifted: where={where!r} must be a regex (searched in each path) or a "
        "function (path, value) -> bool. Fix: e.g. where='Block_0'.")


def _check_num_layers(num_layers: Any) -> int:
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise errors.InvalidArgumentError(
            f"mh.lifted: num_layers={num_layers!r} must be an int >= 1: the depth of the "
            "layer_stack whose params are viewed per layer. Fix: e.g. unstack(params, 12).")
    return num_layers


def _is_stacked(path: str, value: Any, n: int, match: Callable) -> bool:
    shape = jnp.shape(value)
    return bool(shape) and shape[0] == n and bool(match(path, value))


class PerLayerState(NamedTuple):
    """The state of :func:`per_layer`: the inner optimizer's for the stacked and other params.

    Attributes:
      stacked: the inner state of the stacked entries, every leaf with a
        leading axis of ``num_layers`` (one state per layer).
      rest: the inner state of the other entries.
    """

    stacked: Any
    rest: Any


def per_layer(tx: Any, num_layers: int, *, where: Where = None) -> Any:
    """Wraps an optax transformation so each stacked layer is optimized as its own param.

    A rank- or shape-dependent optimizer (Adafactor's factored moments,
    Shampoo's preconditioners) sees one ``[n, a, b]`` tensor where the
    unrolled model had n ``[a, b]`` matrices. The wrapper runs ``tx`` on the
    stacked entries under ``jax.vmap`` over the layer axis, so each layer gets
    exactly the updates it would get unrolled, and the step still compiles
    once for all layers (no per-layer copy of the optimizer in the program).
    The other entries go to ``tx`` as they are. Extra arguments of
    ``update`` (e.g. ``value=`` for line searches) reach both unchanged.

    Transformations that combine all params (``clip_by_global_norm``)
    would see each layer on its own: chain them outside, e.g.
    ``optax.chain(optax.clip_by_global_norm(1.0), per_layer(tx, n))``.

    Args:
      tx: an ``optax.GradientTransformation``.
      num_layers: the depth of the ``layer_stack``; stacked entries are those
        with this leading axis (see :func:`unstack`).
      where: optionally restrict to paths matching this regex or predicate.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` on the flat params dict.

    Example::

      import optax
      tx = mh.lifted.per_layer(optax.adafactor(1e-3), 4)
      params = {"~/Block_0/__call__/w": jnp.ones((4, 8, 8))}
      state = tx.init(params)
      updates, state = tx.update(params, state, params)
    """
    import optax  # type: ignore[import-untyped]  # optional: needed only here

    n = _check_num_layers(num_layers)
    match = _matcher(where)
    tx = optax.with_extra_args_support(tx)

    def split(tree):
        if tree is None:
            return None, None
        stacked = {p: v for p, v in tree.items() if _is_stacked(p, v, n, match)}
        return stacked, {p: v for p, v in tree.items() if p not in stacked}

    def init(params):
        stacked, rest = split(params)
        inner = jax.vmap(tx.init)(stacked) if stacked else tx.init(stacked)
        return PerLayerState(inner, tx.init(rest))

    def update(updates, state, params=None, **extra):
        u_stacked, u_rest = split(updates)
        p_stacked, p_rest = split(params)
        if u_stacked:
            def one(u, s, p):
                return tx.update(u, s, p, **extra)
            new_stacked, s_stacked = jax.vmap(one)(u_stacked, state.stacked, p_stacked)
        else:
            new_stacked, s_stacked = tx.update(u_stacked, state.stacked, p_stacked, **extra)
        new_rest, s_rest = tx.update(u_rest, state.rest, p_rest, **extra)
        merged = {**new_stacked, **new_rest}
        return {p: merged[p] for p in updates}, PerLayerState(s_stacked, s_rest)

    return optax.GradientTransformationExtraArgs(init, update)
