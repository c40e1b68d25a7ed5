"""``cond`` and ``switch``: ``jax.lax`` branches that may use params, state and keys."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import errors
from minihaiku.lifted import _eager_cache, _keys, _lift


def cond(pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any],
         *operands: Any) -> Any:
    """``jax.lax.cond`` inside a transform.

    During init every branch runs once to create its params and state, so no
    ``mh.running_init()`` test is needed; in apply only the taken branch runs.
    Modules built in the branches are named in branch order (``true_fn``
    first).

    Example::

      def f(x, use_a):
        return mh.lifted.cond(use_a, lambda x: A()(x), lambda x: B()(x), x)
    """
    index = jnp.where(pred, 0, 1)
    return _branch("mh.lifted.cond", "jax.lax.cond", index, (true_fn, false_fn), operands)


def switch(index: Any, branches: Sequence[Callable[..., Any]], *operands: Any) -> Any:
    """``jax.lax.switch`` inside a transform; init creates every branch's params.

    ``index`` is clamped to ``[0, len(branches) - 1]`` as in ``jax.lax.switch``.

    Example::

      def f(x, i):
        return mh.lifted.switch(i, [lambda x: A()(x), lambda x: B()(x)], x)
    """
    return _branch("mh.lifted.switch", "jax.lax.switch", index, tuple(branches), operands)


def _branch(name, jax_name, index, branches, operands):
    lift = _lift.Lift(name, jax_name)
    outer = lift.outer
    # Branch i's modules are counted after those of branches 0..i-1, in init
    # and in apply alike; jax.lax.switch traces its branches in order.
    starts: list[dict | None] = [lift.start_counters]
    init_key, key = _keys.split_carried_key(lift.draw_key())
    state = dict(outer.state)  # crosses jax.lax.switch as an input
    if outer.is_init:
        init_operands = _lift.as_traced(operands)
        init_keys = _keys.split_list(init_key, len(branches))
        for branch, branch_key in zip(branches, init_keys, strict=True):
            # Each branch sees the params and state the earlier ones created.
            state = lift.init_pass(branch_key, functools.partial(branch, *init_operands), state,
                                   counters=starts[-1])
            starts.append(lift.end_counters)
    params = outer.params

    def count(i, state, key):
        """Makes sure ``starts[i]`` is known, tracing earlier branches if needed.

        ``jax.lax.switch`` traces every branch in order, except under
        ``jax.disable_jit()``, where it runs only the taken one.
        """
        while len(starts) <= i:
            j = len(starts) - 1
            jax.eval_shape(lambda state, key, operands, j=j: lift.run(
                branches[j], operands, {}, params, state, key, starts[j])[0],
                state, key, operands)
            starts.append(lift.end_counters)

    def lifted_branch(i):
        def run(state, key, operands):
            count(i, state, key)
            out, inner = lift.run(branches[i], operands, {}, params, state, key, starts[i])
            outputs[i] = jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), out)
            # Checked here, before jax.lax.switch compares the branches itself.
            first = min(outputs)  # under jax.disable_jit only the taken branch runs
            if _signature(outputs[i]) != _signature(outputs[first]):
                raise _mismatch_error(name, branches, outputs)
            _lift.check_nothing_created(lift, inner, params, state)
            if len(starts) == i + 1:
                starts.append(inner.counters)
            return out, inner.state
        return run

    outputs: dict[int, Any] = {}
    out, state = _eager_cache.run_transform(
        lambda *args: jax.lax.switch(index, [lifted_branch(i) for i in range(len(branches))],
                                     *args),
        state, key, operands)
    # Modules built after the branches are counted after all of them.
    count(len(branches), state, key)
    lift.end_counters = starts[-1]
    lift.commit(state=state)
    return out


def _signature(shapes: Any) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    return treedef, [(s.shape, s.dtype) for s in leaves]


def _mismatch_error(name: str, branches: Sequence[Callable],
                    outputs: Any) -> errors.LiftedBodyError:
    """Names every branch (where it is defined) and the output shapes it returned."""
    lines = []
    for i, branch in enumerate(branches):
        if i not in outputs:  # not traced yet
            continue
        code = getattr(branch, "__code__", None)
        where = "" if code is None else f" at {code.co_filename}:{code.co_firstlineno}"
        shapes = jax.tree_util.tree_map(lambda s: f"{s.dtype}{list(s.shape)}", outputs[i])
        lines.append(f"  branch {i}: {getattr(branch, '__qualname__', repr(branch))}"
                     f"{where} returns {shapes}")
    return errors.LiftedBodyError(
        f"{name}: the branches return different shapes or dtypes:\n" + "\n".join(lines)
        + "\nFix: make every branch return the same structure, shapes and dtypes (pad, "
        "reshape or .astype inside the branch).")
