"""``grad`` and ``value_and_grad``: ``jax.grad`` of a function that uses modules."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from minihaiku import errors
from minihaiku.lifted import _eager_cache, _keys, _lift


def value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0,
                   has_aux: bool = False) -> Callable[..., Any]:
    """``jax.value_and_grad`` of ``f``, which may use params, state and keys.

    Differentiates with respect to ``f``'s arguments ``argnums``; the params
    are closed over (an outer ``jax.grad`` of ``apply`` w.r.t. the params sees
    through it). In init, ``f`` first runs once to create its params and
    state, so ``grad`` works in init and apply alike. State set inside is
    carried out; keys drawn inside are the same in init and apply.

    Args:
      f: a function returning a scalar (or ``(scalar, aux)`` with ``has_aux``).
      argnums: which positional arguments to differentiate, as in ``jax.grad``.
      has_aux: as in ``jax.grad``.

    Returns:
      A function returning ``(value, grads)`` (``((value, aux), grads)`` with
      ``has_aux``).

    Example::

      def loss(x):                 # a gradient penalty
        critic = lambda x: jnp.sum(MyLinear(1)(x))
        dx = mh.lifted.grad(critic)(x)
        return critic(x) + jnp.sum(dx ** 2)
    """
    many = not isinstance(argnums, int)
    positions = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        lift = _lift.Lift("mh.lifted.value_and_grad", "jax.value_and_grad")
        outer = lift.outer
        where = _positions(positions, args)
        init_key, key = _keys.split_carried_key(lift.draw_key())
        state = lift.init_pass(init_key, lambda: f(*_lift.as_traced(args), **kwargs))
        params = outer.params

        def body(diff, state, key):
            full = list(args)
            for i, value in zip(where, diff, strict=True):
                full[i] = value
            out, inner = lift.run(f, tuple(full), kwargs, params, state, key)
            _lift.check_nothing_created(lift, inner, params, state)
            value, aux = out if has_aux else (out, None)
            return value, (aux, inner.state)

        def differentiate(diff, state, key):
            return jax.value_and_grad(body, has_aux=True)(diff, state, key)

        (value, (aux, state)), grads = _eager_cache.run_transform(
            differentiate, tuple(args[i] for i in where), state, key)
        lift.commit(state=state)
        grads = grads if many else grads[0]
        return ((value, aux) if has_aux else value), grads

    return wrapped


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0,
         has_aux: bool = False) -> Callable[..., Any]:
    """``jax.grad`` of ``f``, which may use params, state and keys.

    As :func:`value_and_grad`, returning only the gradients (``(grads,
    aux)`` with ``has_aux``).

    Example::

      def residual(x):             # physics-informed: d/dx of the network
        u = lambda x: jnp.sum(MyLinear(1)(x))
        return mh.lifted.grad(u)(x) - x
    """
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        value, grads = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return wrapped


def _positions(positions: Any, args: Sequence) -> tuple:
    """``argnums`` as indices into ``args``, or an ``InvalidArgumentError``."""
    if not positions or any(not -len(args) <= i < len(args) for i in positions):
        raise errors.InvalidArgumentError(
            f"mh.lifted.grad: argnums={positions} but the function was called with "
            f"{len(args)} positional argument(s). Fix: differentiate positional "
            "arguments that are passed (keyword arguments are not differentiated).")
    return tuple(i % len(args) for i in positions)
