"""What the decoder nets share: their stack of blocks and their config checks."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.lifted import layer_stack
from minihaiku.module import Module
from minihaiku.nets import _causal_attention


def run_blocks(make_block: Callable[[], Callable], num_layers: int, scan_layers: bool,
               x: jax.Array, *args: Any) -> jax.Array:
    """Applies ``num_layers`` blocks ``make_block()(x, *args)`` in turn.

    Unrolled, the blocks are built one after another (named ``<name>_0``,
    ``<name>_1``, ...); with ``scan_layers`` one block is built inside
    ``layer_stack`` (``<name>_0``, every param and cache entry with a leading
    axis of ``num_layers``): the same function, one compiled loop.
    """
    if scan_layers:
        return layer_stack(num_layers)(lambda x, *a: make_block()(x, *a))(x, *args)
    for _ in range(num_layers):
        x = make_block()(x, *args)
    return x


def check_config(config: Any, positive: tuple[str, ...]) -> None:
    """Checks that the named fields of a net config are ints >= 1 (or None when optional)."""
    name = type(config).__name__
    for field in positive:
        value = getattr(config, field)
        if value is None and _optional(config, field):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise errors.InvalidArgumentError(
                f"{name}({field}={value!r}): {field} must be an int >= 1. Fix: pass "
                f"e.g. {field}=2.")


def _optional(config: Any, field: str) -> bool:
    default = {f.name: f.default for f in dataclasses.fields(config)}.get(field)
    return default is None


class Part(Module):
    """A module of a net (a block, its attention, its MLP) holding the net's config."""

    def __init__(self, config: Any, name: str | None = None):
        super().__init__(name=name)
        self.config = config


def check_net_config(net: Module, config: Any, kind: type) -> None:
    """Refuses a config of another type than ``kind`` for ``net``."""
    if not isinstance(config, kind):
        raise errors.InvalidArgumentError(
            f"{type(net).__name__} at '{net.module_path}' got config of type "
            f"{type(config).__name__}. Fix: pass an mh.nets.{kind.__name__}.")


def start(where: str, tokens: Any, positions: Any, decode: bool,
          cache_size: int | None) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Checks ``tokens`` (int ``[batch, T]``); returns them, the positions and the cache index.

    With ``decode``, the index is the number of positions already cached
    (and the cache counter advances by ``T``); default positions continue
    from it.
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise errors.ModuleInputError(
            f"{where} got tokens of shape {tokens.shape} and dtype {tokens.dtype}; it "
            "needs int ids of shape [batch, T]. Fix: e.g. tokens[None] for one "
            "sequence, tokens.astype(jnp.int32) for floats.")
    t = tokens.shape[1]
    index = _causal_attention.next_index(where, cache_size, t) if decode else None
    if positions is None:
        positions = jnp.arange(t)[None] + (0 if index is None else index)
    return tokens, jnp.asarray(positions), index
