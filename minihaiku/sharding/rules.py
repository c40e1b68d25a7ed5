"""Partition rules: from a param path (and its logical axes) to a ``PartitionSpec``."""

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from minihaiku import errors

MeshAxes = None | str | tuple


@dataclasses.dataclass(frozen=True)
class LogicalRules:
    """Maps logical axis names (from ``get_param(..., axes=...)``) to mesh axes.

    Used as an entry of a rules list: it matches every path whose param was
    created with ``axes``; other paths go on to the next rule.
    """
    mapping: Mapping[str, MeshAxes]

    def spec(self, path: str, names: tuple) -> P:
        unknown = sorted({n for n in names if n is not None and n not in self.mapping})
        if unknown:
            raise errors.ShardingError(
                f"Param '{path}' has logical axes {names} but the logical rules "
                f"{dict(self.mapping)} do not map {unknown}. Fix: add them to "
                "logical_rules, with None to leave an axis unsharded.")
        return P(*(None if n is None else self.mapping[n] for n in names))


# The rules argument: (path_regex, PartitionSpec) pairs and LogicalRules, or one LogicalRules.
Rules = LogicalRules | Sequence[LogicalRules | tuple[str | re.Pattern, P | tuple]]


def logical_rules(mapping: Mapping[str, MeshAxes] | Sequence[tuple]) -> LogicalRules:
    """Rules for params annotated with logical axes (``get_param(..., axes=...)``).

    Args:
      mapping: logical name -> mesh axis (a name, a tuple of names, or
        ``None`` for unsharded), as a dict or a list of pairs.

    Returns:
      An entry for a rules list (or a rules list by itself).

    Example::

      rules = [mh.sharding.logical_rules({"embed": None, "mlp": "model"}),
               (r"Embed_0/.*/embeddings$", P(None, "model"))]
    """
    pairs = list(mapping.items()) if isinstance(mapping, Mapping) else list(mapping)
    for pair in pairs:
        if (not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[0], str)
                or not _is_mesh_axes(pair[1])):
            raise errors.InvalidArgumentError(
                f"logical_rules: entry {pair!r} is not (logical name, mesh axis) with a "
                "mesh axis that is a str, a tuple of str or None. Fix: e.g. "
                "{'embed': None, 'mlp': 'model'}.")
    return LogicalRules(dict(pairs))


def _is_mesh_axes(axes: Any) -> bool:
    return axes is None or isinstance(axes, str) or (
        isinstance(axes, tuple) and all(isinstance(a, str) for a in axes))


def checked_rules(rules: Rules) -> list:
    if isinstance(rules, LogicalRules):
        return [rules]
    if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Sequence):
        raise errors.InvalidArgumentError(
            f"rules must be a list of (path_regex, PartitionSpec) pairs, got "
            f"{type(rules).__name__}. Fix: e.g. [(r'Linear_0/.*/w$', P(None, 'model'))].")
    out: list[LogicalRules | tuple[re.Pattern, P]] = []
    for rule in rules:
        if isinstance(rule, LogicalRules):
            out.append(rule)
            continue
        if not (isinstance(rule, tuple) and len(rule) == 2
                and isinstance(rule[0], (str, re.Pattern))
                and isinstance(rule[1], (P, tuple))):
            raise errors.InvalidArgumentError(
                f"Rule {rule!r} is not a (path_regex, PartitionSpec) pair or a "
                "logical_rules(...). Fix: e.g. (r'mlp/.*/w$', P('data', 'model')).")
        try:
            pattern = re.compile(rule[0])
        except re.error as e:
            raise errors.InvalidArgumentError(
                f"Rule regex {rule[0]!r} does not compile: {e}.") from e
        spec = rule[1] if isinstance(rule[1], P) else P(*rule[1])
        out.append((pattern, spec))
    return out


def _shape(path: str, value: Any) -> tuple:
    shape = getattr(value, "shape", None)
    if shape is None:
        raise errors.InvalidArgumentError(
            f"Entry '{path}' is a {type(value).__name__}, not an array or "
            "jax.ShapeDtypeStruct. Fix: pass the params dict (or "
            "jax.eval_shape(init, ...)).")
    return tuple(shape)


def _spec_for(path: str, shape: tuple, rules: list, axes: Mapping | None) -> P:
    for rule in rules:
        if isinstance(rule, LogicalRules):
            if axes is None:
                raise errors.InvalidArgumentError(
                    "The rules hold logical_rules(...) but no logical axes were given. "
                    "Fix: pass axes=mh.sharding.logical_axes(init, rng, *inputs), or "
                    "use mh.sharding.init, which collects them.")
            names = axes.get(path)
            if names is not None:
                spec = rule.spec(path, names)
                break
        elif rule[0].search(path):
            spec = rule[1]
            break
    else:
        return P()
    if len(spec) > len(shape):
        raise errors.ShardingError(
            f"'{path}' of shape {shape} (rank {len(shape)}) cannot take "
            f"{spec}: the spec has {len(spec)} entries. A spec applies to the "
            "trailing axes, so it may be shorter than the rank, never longer. "
            "Fix: shorten the spec, or make the rule's regex skip this path.")
    # Pad on the left: the spec names the trailing axes, so a leading
    # layer_stack axis stays unsharded.
    return P(*([None] * (len(shape) - len(spec))), *spec)


def specs(tree: Mapping[str, Any], rules: Rules, *, axes: Mapping | None = None) -> dict:
    """The ``PartitionSpec`` of every entry of ``tree`` under ``rules``.

    The first rule whose regex is found in a path (``re.search``) wins; no
    match means replicated (``P()``). A spec shorter than an array's rank
    applies to its trailing axes, so one rule covers a param and its
    ``layer_stack``-stacked twin.

    Args:
      tree: path -> array or ``jax.ShapeDtypeStruct`` (params or state).
      rules: a list of ``(path_regex, PartitionSpec)`` pairs and
        ``logical_rules(...)`` entries.
      axes: path -> logical axes, from :func:`logical_axes`; needed only if
        the rules hold ``logical_rules``.

    Returns:
      path -> ``PartitionSpec``: as long as the array's rank where a rule
      matched, ``P()`` (replicated) where none did.

    Example::

      specs = mh.sharding.specs(params, [(r"/w$", P(None, "model"))])
    """
    rules = checked_rules(rules)
    return {path: _spec_for(path, _shape(path, value), rules, axes)
            for path, value in tree.items()}


def shardings(tree: Mapping[str, Any], rules: Rules, mesh: Mesh, *,
              axes: Mapping | None = None) -> dict:
    """The ``NamedSharding`` on ``mesh`` of every entry of ``tree`` under ``rules``.

    Like :func:`specs`, and also checks every spec against the mesh: each
    mesh axis named must exist and divide the dimension it shards.

    Example::

      mesh = mh.sharding.mesh("model:1")
      params = jax.device_put(params, mh.sharding.shardings(params, rules, mesh))
    """
    out = {}
    for path, spec in specs(tree, rules, axes=axes).items():
        _check_on_mesh(path, _shape(path, tree[path]), spec, mesh)
        out[path] = NamedSharding(mesh, spec)
    return out


def _check_on_mesh(path: str, shape: tuple, spec: P, mesh: Mesh) -> None:
    sizes = dict(mesh.shape)
    used: list = []
    for dim, entry in zip(shape, spec, strict=False):  # P() when no rule matched.
        if entry is P.UNCONSTRAINED:
            # Fine inside a jitted function, not for placing a param.
            raise errors.ShardingError(
                f"'{path}' of shape {shape} would be placed with {spec}, but "
                "P.UNCONSTRAINED only means something inside a jitted function "
                "(jax.lax.with_sharding_constraint); a param needs a definite "
                "placement. Fix: use None (replicated) or a mesh axis name.")
        if entry is None:
            continue
        names = entry if isinstance(entry, tuple) else (entry,)
        twice = [n for n in names if n in used]
        used.extend(names)
        if twice:
            raise errors.ShardingError(
                f"'{path}' of shape {shape} is sharded {spec}: mesh axis {twice} is "
                "used for more than one dimension, so the shards would not tile the "
                "array. Fix: name each mesh axis at most once per spec, e.g. "
                "P('data', 'model').")
        missing = [n for n in names if n not in sizes]
        if missing:
            raise errors.ShardingError(
                f"'{path}' of shape {shape} is sharded {spec} but the mesh "
                f"{sizes} has no axis {missing}. Fix: name only mesh axes in the "
                "rules, or build the mesh with those axes.")
        parts = int(np.prod([sizes[n] for n in names]))
        if dim % parts:
            raise errors.ShardingError(
                f"'{path}' of shape {shape} is sharded {spec} on the mesh "
                f"{sizes}: dimension {dim} does not split into {parts} equal parts "
                f"(mesh axes {names}). Fix: change the size or the rule.")
