"""``mh.data``: select, split, merge, count and reshape params by path.

Params and state are flat dicts keyed by readable paths
(``~/MLP_0/__call__/Linear_1/__call__/w``), so the everyday operations are
dict operations on those paths: a *pattern* is a regex searched
(``re.search``) in the path, or a function ``fn(path, value) -> bool``.
``filter``, ``partition`` and ``merge`` take and return flat dicts and keep
their order; ``size`` and ``nbytes`` take any pytree. ``nest`` splits the
paths on ``/`` into nested dicts (the leading ``~`` stays the root key, so
``flatten(nest(params)) == params`` for any params) and ``flatten`` joins
them back.

Typical uses, with optax::

  optimizer = optax.multi_transform(  # train only the LoRA adapters
      {"trainable": optax.adam(1e-3), "frozen": optax.set_to_zero()},
      mh.data.labels(params, r"/lora_[ab]$"))

  frozen, trainable = mh.data.partition("Embed_", params)
  no_decay = mh.data.filter(r"LayerNorm|/b$", params)
  mask = {path: path not in no_decay for path in params}
  optimizer = optax.adamw(1e-3, weight_decay=1e-2, mask=mask)
"""

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from minihaiku import errors

Pattern = Union[str, "re.Pattern[str]", Callable[[str, Any], bool]]

_SEP = "/"


def filter(pattern_or_fn: Pattern, tree: Mapping[str, Any]) -> dict:  # noqa: A001
    """The entries of a flat params (or state) dict whose path matches.

    Args:
      pattern_or_fn: a regex searched in each path (``re.search``), or
        ``fn(path, value) -> bool``.
      tree: a flat ``{path: value}`` dict, e.g. the params from ``init``.

    Returns:
      A new dict of the matching entries, in ``tree``'s order.

    Example::

      >>> params = {"~/Linear_0/__call__/w": 1, "~/Linear_0/__call__/b": 2}
      >>> mh.data.filter(r"/b$", params)
      {'~/Linear_0/__call__/b': 2}
    """
    return partition(pattern_or_fn, tree)[0]


def partition(pattern_or_fn: Pattern, tree: Mapping[str, Any]) -> tuple[dict, dict]:
    """Splits a flat dict into the entries whose path matches and the rest.

    Args:
      pattern_or_fn: a regex searched in each path, or ``fn(path, value) -> bool``.
      tree: a flat ``{path: value}`` dict.

    Returns:
      ``(matched, rest)``, two dicts in ``tree``'s order;
      ``merge(matched, rest) == tree``.

    Example::

      >>> params = {"~/Embed_0/__call__/embeddings": 1, "~/Linear_0/__call__/w": 2}
      >>> frozen, trainable = mh.data.partition("Embed_", params)
      >>> list(trainable)
      ['~/Linear_0/__call__/w']
    """
    tree = _flat(tree, "mh.data.partition")
    matches = _predicate(pattern_or_fn)
    matched: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for path, value in tree.items():
        (matched if matches(path, value) else rest)[path] = value
    return matched, rest


def labels(tree: Mapping[str, Any], rules: Pattern | Sequence[Pattern],
           matched: str = "trainable", rest: str = "frozen") -> dict:
    """Optax labels: ``matched`` for the paths matching ``rules``, ``rest`` otherwise.

    The labels dict has ``tree``'s paths, so it is the ``param_labels`` of
    ``optax.multi_transform``: freezing everything but the matched params
    is one line, with ``optax.set_to_zero()`` for ``"frozen"``.

    Args:
      tree: a flat ``{path: value}`` dict, e.g. the params from ``init``.
      rules: a regex or ``fn(path, value) -> bool``, or a list of them (a
        path matching any one is matched).
      matched: the label of matching paths.
      rest: the label of the others.

    Returns:
      ``{path: label}`` in ``tree``'s order.

    Example::

      >>> params = {"~/Linear_0/__call__/w": 1, "~/Linear_0/__call__/w/lora_a": 2}
      >>> mh.data.labels(params, r"lora_")
      {'~/Linear_0/__call__/w': 'frozen', '~/Linear_0/__call__/w/lora_a': 'trainable'}
    """
    tree = _flat(tree, "mh.data.labels")
    many: Sequence[Any] = rules if isinstance(rules, (list, tuple)) else [rules]
    if not many:
        raise errors.InvalidArgumentError(
            "mh.data.labels got no rules, so every param would be labelled "
            f"{rest!r}. Fix: pass a regex (or a list), e.g. r'/lora_[ab]$'.")
    preds = [_predicate(r) for r in many]
    return {path: matched if any(p(path, value) for p in preds) else rest
            for path, value in tree.items()}


def merge(*trees: Mapping[str, Any]) -> dict:
    """Merges flat dicts into one; for a path in several, the last one wins.

    Like ``dict.update`` (and dm-haiku's ``data_structures.merge``), so a
    later dict overrides an earlier one: ``merge(defaults, loaded)``.

    Example::

      >>> mh.data.merge({"~/w": 1, "~/b": 2}, {"~/b": 3})
      {'~/w': 1, '~/b': 3}
    """
    out: dict = {}
    for tree in trees:
        out.update(_flat(tree, "mh.data.merge"))
    return out


def size(tree: Any) -> int:
    """The number of elements over every leaf of a pytree (arrays or shapes).

    Example::

      >>> mh.data.size({"~/w": jnp.zeros((3, 4)), "~/b": jnp.zeros(4)})
      16
    """
    return sum(int(np.prod(shape)) for shape, _ in _leaf_specs(tree))


def nbytes(tree: Any) -> int:
    """The bytes held by every leaf of a pytree: elements times dtype itemsize.

    Leaves may be arrays or ``jax.ShapeDtypeStruct``s (``jax.eval_shape(init,
    ...)``: counts a model without creating it). Sub-byte dtypes such as
    ``int4`` count one byte per element, as numpy holds them.

    Example::

      >>> mh.data.nbytes({"~/w": jnp.zeros((3, 4)), "~/b": jnp.zeros(4, jnp.bfloat16)})
      56
    """
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in _leaf_specs(tree))


def nest(tree: Mapping[str, Any]) -> dict:
    """Flat ``/``-paths to nested dicts: ``{"~/A_0/w": v}`` → ``{"~": {"A_0": {"w": v}}}``.

    Every path is split on ``/``, so ``flatten(nest(tree)) == tree`` for any
    flat dict. A path that is also the prefix of another (``"a"`` and
    ``"a/b"``) has no nested form and is refused.

    Example::

      >>> mh.data.nest({"~/Linear_0/__call__/w": 1, "~/Linear_0/__call__/b": 2})
      {'~': {'Linear_0': {'__call__': {'w': 1, 'b': 2}}}}
    """
    out: dict = {}
    for path, value in _flat(tree, "mh.data.nest").items():
        *parents, leaf = path.split(_SEP)
        node = out
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise _clash(_SEP.join(parents[:depth + 1]), path)
        if leaf in node:  # Only a sub-dict can be there: the paths are distinct.
            raise _clash(path, path + _SEP + next(iter(flatten(node[leaf]))))
        node[leaf] = value
    return out


def flatten(nested: Mapping[str, Any]) -> dict:
    """Nested dicts to flat ``/``-paths; the inverse of :func:`nest`.

    Every value that is not a ``Mapping`` is a leaf. Keys must be strings
    without ``/`` (else two trees would flatten alike); empty sub-dicts hold
    no leaf and vanish.

    Example::

      >>> mh.data.flatten({"~": {"Linear_0": {"__call__": {"w": 1}}}})
      {'~/Linear_0/__call__/w': 1}
    """
    if not isinstance(nested, Mapping):
        raise errors.InvalidArgumentError(
            f"mh.data.flatten expects nested dicts, got {type(nested).__name__}.")
    out: dict = {}

    def visit(node: Mapping, prefix: tuple) -> None:
        for key, value in node.items():
            path = prefix + (key,)
            if not isinstance(key, str) or _SEP in key:
                raise errors.InvalidArgumentError(
                    f"mh.data.flatten: key {key!r} at {list(path)} is not a string without "
                    f"'{_SEP}', so it cannot be one component of a path. Fix: rename it.")
            if isinstance(value, Mapping):
                visit(value, path)
            else:
                out[_SEP.join(path)] = value

    visit(nested, ())
    return out


def _predicate(pattern_or_fn: Pattern) -> Callable[[str, Any], bool]:
    if isinstance(pattern_or_fn, (str, re.Pattern)):
        try:
            regex = re.compile(pattern_or_fn)
        except re.error as e:
            raise errors.InvalidArgumentError(
                f"mh.data: {pattern_or_fn!r} is not a valid regex: {e}. Fix: escape "
                "special characters with re.escape.") from e
        return lambda path, value: regex.search(path) is not None
    if callable(pattern_or_fn):
        return lambda path, value: bool(pattern_or_fn(path, value))
    raise errors.InvalidArgumentError(
        f"mh.data: a pattern must be a regex string or fn(path, value) -> bool, got "
        f"{type(pattern_or_fn).__name__} ({pattern_or_fn!r}).")


def _flat(tree: Any, call: str) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping):
        raise errors.InvalidArgumentError(
            f"{call} expects a flat {{path: array}} dict (params or state), got "
            f"{type(tree).__name__}.")
    for path, value in tree.items():
        if not isinstance(path, str):
            raise errors.InvalidArgumentError(
                f"{call}: key {path!r} is not a str path. Fix: pass params or state as "
                "returned by init.")
        if isinstance(value, Mapping):
            raise errors.InvalidArgumentError(
                f"{call}: '{path}' holds a dict, but paths must map to arrays. Fix: "
                "flatten nested dicts first with mh.data.flatten.")
    return tree


def _clash(leaf: str, other: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        f"mh.data.nest: '{leaf}' is a value and also the prefix of '{other}', so the "
        "paths have no nested form. Fix: rename one of them.")


def _leaf_specs(tree: Any) -> list[tuple[tuple, np.dtype]]:
    specs = []
    for leaf in jax.tree.leaves(tree):
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            specs.append((tuple(leaf.shape), leaf.dtype))
        else:
            value = jnp.asarray(leaf)  # Python scalars: the dtype JAX gives them.
            specs.append((value.shape, value.dtype))
    return specs
