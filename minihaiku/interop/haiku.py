"""dm-haiku params and state, both ways: ``from_haiku`` and ``to_haiku``.

The mapping is structural, read off the minihaiku path; no per-net rules. A
param path is ``~`` followed by ``<module>_<n>/<method>`` pairs and the entry
name; a state path ends in the owning module, ``.../<module>_<n>/<name>``.
Each module segment ``<name>_<n>`` is what dm-haiku calls ``<snake name>``
for ``n == 0`` and ``<snake name>_<n>`` otherwise (``Linear_1`` ->
``linear_1``, ``ResNet18_0`` -> ``res_net18``, ``block_group_2_0`` ->
``block_group_2``, snake-cased by Haiku's own rule). A module built in its
parent's ``__init__`` is Haiku's ``parent/~/child``; built in ``__call__``,
``parent/child``; built in another method ``m``, ``parent/~m/child``. The
method that creates a param is not part of its Haiku name. So
``~/ResNet18_0/__init__/block_group_0_0/__init__/block_1_0/__init__/conv_0_0/__call__/w``
is Haiku's ``res_net18/~/block_group_0/~/block_1/~/conv_0`` ``w``: this holds
for every net whose modules are named (and, for the same name, counted) as
its dm-haiku twin names them, as ``mh.nets`` and ``mh.nn`` do.

Shapes may differ only by unit axes (dm-haiku's ``BatchNorm`` keeps
``[1, ..., C]`` where minihaiku keeps ``[C]``); values are reshaped to the
target's shapes. Paths built by ``name_scope`` or stacked by ``layer_stack``
have no Haiku twin and are reported as missing.
"""

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from minihaiku import errors

_SNAKE_1 = re.compile("(.)([A-Z][a-z]+)")
_SNAKE_2 = re.compile("([a-z0-9])([A-Z])")
_MODULE = re.compile(r"^(.+)_(\d+)$")
_SHOWN = 8


def _snake(name: str) -> str:
    # dm-haiku's utils.camel_to_snake, so class names map as Haiku names them.
    return _SNAKE_2.sub(r"\1_\2", _SNAKE_1.sub(r"\1_\2", name)).lower()


def haiku_name(path: str) -> tuple[str, str]:
    """The dm-haiku ``(module name, entry name)`` of a minihaiku path.

    Args:
      path: a param or state path, e.g. ``~/MLP_0/__init__/linear_1_0/__call__/w``.

    Returns:
      e.g. ``("mlp/~/linear_1", "w")``.

    Raises:
      InvalidArgumentError: the path is not ``~/<module>_<n>/<method>/.../<name>``
        (a param) or ``~/.../<module>_<n>/<name>`` (a state entry).

    Example::

      mh.interop.haiku_name("~/Linear_1/__call__/w")   # ('linear_1', 'w')
    """
    parts = path.split("/")
    middle = parts[1:-1]
    if parts[0] != "~" or len(parts) < 3:
        raise _path_error(path)
    if len(middle) % 2:
        # A state entry: it belongs to the module, no method segment follows it.
        middle = middle + ["__state__"]
    name, joiner = "", ""
    for module, method in zip(middle[::2], middle[1::2], strict=True):
        match = _MODULE.match(module)
        if match is None:
            raise _path_error(path)
        base, n = _snake(match.group(1)), int(match.group(2))
        name += joiner + (base if n == 0 else f"{base}_{n}")
        # Haiku: `parent/~/child` from __init__, `parent/child` from __call__,
        # `parent/~method/child` from any other method.
        joiner = {"__init__": "/~/", "__call__": "/"}.get(method, f"/~{method}/")
    return name, parts[-1]


def _path_error(path: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        f"'{path}' is not a module path '~/<Module>_<n>/<method>/.../<name>', so it has "
        "no dm-haiku name (paths from mh.name_scope or a bare get_param at the top "
        "level have none). Fix: convert only params built by modules.")


def from_haiku(hk_params: Mapping[str, Mapping[str, Any]],
               hk_state: Mapping[str, Mapping[str, Any]] | None = None, *,
               net: Any) -> Any:
    """dm-haiku params (and state) as minihaiku dicts for the same architecture.

    Args:
      hk_params: dm-haiku's ``{module name: {param name: array}}``.
      hk_state: dm-haiku's state, same layout (for ``transform_with_state``).
      net: the minihaiku layout to fill: what the model's ``init`` returns,
        params (or ``(params, state)`` when ``hk_state`` is given); real
        arrays or ``jax.eval_shape(f.init, ...)``. Its paths and shapes are
        the targets; its values are not used.

    Returns:
      ``params``, or ``(params, state)`` when ``hk_state`` is given: flat
      dicts in ``net``'s order holding dm-haiku's values, reshaped to
      ``net``'s shapes where they differ by unit axes.

    Raises:
      MismatchError: an entry the net needs is missing from the Haiku dicts,
        one there is not used by the net, or shapes differ (each named).

    Example::

      import haiku as hk
      hk_f = hk.transform(lambda x: hk.nets.MLP([3, 2])(x))
      hk_params = hk_f.init(jax.random.PRNGKey(0), jnp.ones([1, 4]))
      f = mh.transform(lambda x: mh.nets.MLP([3, 2])(x))
      params = mh.interop.from_haiku(
          hk_params, net=jax.eval_shape(f.init, 0, jnp.ones([1, 4])))
    """
    if hk_state is None:
        return _convert(_as_layout(net, "net", False), hk_params, "hk_params")
    params, state = _as_layout(net, "net", True)
    return (_convert(params, hk_params, "hk_params"),
            _convert(state, hk_state, "hk_state"))


def to_haiku(params: Mapping[str, Any], state: Mapping[str, Any] | None = None, *,
             net: Any = None) -> Any:
    """minihaiku params (and state) as dm-haiku dicts for the same architecture.

    Args:
      params: a flat ``{path: array}`` params dict.
      state: a state dict, for ``transform_with_state`` models.
      net: optionally, the dm-haiku layout to match: what the dm-haiku
        model's ``init`` returns (params, or ``(params, state)`` with
        ``state``), arrays or ``jax.eval_shape``. With it, every entry must
        match one of its entries and values take its shapes (dm-haiku's
        ``BatchNorm`` keeps ``[1, ..., C]``); without it, shapes are kept.

    Returns:
      ``hk_params``, or ``(hk_params, hk_state)`` when ``state`` is given:
      ``{module name: {name: array}}``.

    Raises:
      MismatchError: with ``net``, an entry missing on either side or a
        shape that differs by more than unit axes.

    Example::

      f = mh.transform(lambda x: mh.nets.MLP([3, 2])(x))
      hk_params = mh.interop.to_haiku(f.init(0, jnp.ones([1, 4])))
      # {'mlp/~/linear_0': {'w': (4, 3), 'b': (3,)}, 'mlp/~/linear_1': {...}}
    """
    if state is None:
        target = None if net is None else _as_layout(net, "net", False)
        return _to_nested(params, target, "params")
    target_params, target_state = (None, None) if net is None else _as_layout(net, "net", True)
    return (_to_nested(params, target_params, "params"),
            _to_nested(state, target_state, "state"))


def _as_layout(net: Any, what: str, with_state: bool) -> Any:
    if with_state:
        if (isinstance(net, (tuple, list)) and len(net) == 2
                and all(isinstance(t, Mapping) for t in net)):
            return net
        raise errors.InvalidArgumentError(
            f"{what} must be the (params, state) pair init returns when state is "
            f"converted too; got {type(net).__name__}. Fix: pass net=f.init(...) (or "
            "jax.eval_shape(f.init, ...)) of the transform_with_state model.")
    if isinstance(net, Mapping):
        return net
    raise errors.InvalidArgumentError(
        f"{what} must be the params dict init returns (or its jax.eval_shape); got "
        f"{type(net).__name__}. Fix: pass net=jax.eval_shape(f.init, rng, *args); for a "
        "model with state, pass hk_state too and net=(params, state).")


def _convert(target: Mapping[str, Any], hk: Mapping[str, Any], what: str) -> dict:
    names = _haiku_names(target)
    out, missing, used = {}, [], set()
    for path, (module, name) in names.items():
        entries = hk.get(module)
        if not isinstance(entries, Mapping) or name not in entries:
            missing.append(f"'{module}' '{name}' (for '{path}')")
            continue
        used.add((module, name))
        out[path] = _reshaped(entries[name], np.shape(target[path]),
                              f"{what}['{module}']['{name}']", f"'{path}'")
    unused = [f"'{m}' '{n}'" for m, entries in hk.items() for n in entries
              if (m, n) not in used]
    _check_complete(f"from_haiku: the net needs entries missing in {what}", missing,
                    f"{what} has entries the net does not use", unused)
    return out


def _to_nested(flat: Mapping[str, Any], target: Mapping[str, Any] | None,
               what: str) -> dict:
    out: dict[str, dict[str, Any]] = {}
    missing = []
    for path, (module, name) in _haiku_names(flat).items():
        value = flat[path]
        if target is not None:
            entries = target.get(module)
            if not isinstance(entries, Mapping) or name not in entries:
                missing.append(f"'{module}' '{name}' (from '{path}')")
                continue
            value = _reshaped(value, np.shape(entries[name]), f"{what}['{path}']",
                              f"net['{module}']['{name}']")
        out.setdefault(module, {})[name] = value
    if target is not None:
        unfilled = [f"'{m}' '{n}'" for m, entries in target.items() for n in entries
                    if n not in out.get(m, {})]
        _check_complete(f"to_haiku: the net needs entries missing in {what}", unfilled,
                        f"{what} has entries the net lacks", missing)
    return out


def _haiku_names(flat: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    seen: dict[tuple[str, str], str] = {}
    for path in flat:
        key = haiku_name(path)
        if key in seen:
            raise errors.MismatchError(
                f"'{seen[key]}' and '{path}' both map to dm-haiku's '{key[0]}' "
                f"'{key[1]}' (Haiku names an entry by module, not by method). These "
                "params have no dm-haiku layout.")
        seen[key] = path
        names[path] = key
    return names


def _reshaped(value: Any, shape: tuple, source: str, target: str) -> Any:
    have = tuple(np.shape(value))
    if have == shape:
        return value
    if [d for d in have if d != 1] == [d for d in shape if d != 1]:
        return value.reshape(shape)
    raise errors.MismatchError(
        f"{source} has shape {have} but {target} needs {shape}. Fix: convert params of "
        "the same architecture (same sizes, e.g. num_classes and channels).")


def _check_complete(first: str, missing: list, second: str, unused: list) -> None:
    if not missing and not unused:
        return
    lines = [f"{head} ({len(items)}): " + ", ".join(items[:_SHOWN])
             + (" ..." if len(items) > _SHOWN else "")
             for head, items in ((first, missing), (second, unused)) if items]
    raise errors.MismatchError(
        "mh.interop." + "; ".join(lines) + ". Fix: build the minihaiku net with the "
        "same architecture and module names as the dm-haiku one (mh.nets mirror "
        "hk.nets; sizes such as num_classes and channels must agree).")
