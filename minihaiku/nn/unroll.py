"""Running a recurrent core over a sequence: ``dynamic_unroll``, ``static_unroll``."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from minihaiku import _transform as transform_lib
from minihaiku import errors, lifted

Core = Callable[[Any, Any], tuple[Any, Any]]


def _num_steps(xs: Any, time_axis: int, caller: str) -> int:
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves:
        raise errors.ModuleInputError(
            f"{caller} got an empty input sequence. Fix: pass an array (or a "
            "pytree of arrays) with a time axis.")
    shapes = [jnp.shape(x) for x in leaves]
    if any(len(s) <= time_axis for s in shapes) or len(
            {s[time_axis] for s in shapes}) != 1:
        layout = "[T, B, ...]" if time_axis == 0 else "[B, T, ...]"
        raise errors.ModuleInputError(
            f"{caller} needs every input leaf shaped {layout} with the same "
            f"number of steps T; got shapes {shapes}. Fix: check time_major.")
    return shapes[0][time_axis]


def _check_layout(xs: Any, initial_state: Any, time_major: bool, caller: str) -> None:
    # A [B, T, ...] input given as time-major (or the reverse) shows itself
    # when the state's batch size matches the other axis: say so here, where
    # the core would only see a state/input batch mismatch.
    batches = {jnp.shape(s)[0] for s in jax.tree_util.tree_leaves(initial_state)
               if jnp.ndim(s) >= 2}
    shapes = [jnp.shape(x) for x in jax.tree_util.tree_leaves(xs)]
    if len(batches) != 1 or not shapes or any(len(s) < 2 for s in shapes):
        return
    (b,) = batches
    batch_axis, other = (1, 0) if time_major else (0, 1)
    if all(s[batch_axis] != b and s[other] == b for s in shapes):
        raise errors.ModuleInputError(
            f"{caller}(time_major={time_major}) got inputs of shape(s) {shapes} and an "
            f"initial state with batch size {b}: the batch is on axis {other}, so the "
            f"input is {'[B, T, ...]' if time_major else '[T, B, ...]'}. Fix: pass "
            f"time_major={not time_major}.")


def _swap_batch_time(tree):
    return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), tree)


def dynamic_unroll(core: Core, xs: Any, initial_state: Any, time_major: bool = True,
                   reverse: bool = False, return_all_states: bool = False,
                   unroll: int = 1) -> tuple[Any, Any]:
    """Runs ``core`` over the time axis of ``xs`` in one ``mh.lifted.scan`` loop.

    The core's params are shared by all steps (created once in init).
    Outside a transform (a core that is a pure function) it uses
    ``jax.lax.scan`` directly.

    Args:
      core: ``core(x_t, state) -> (out_t, state)``, e.g. an ``mh.nn.LSTM``.
      xs: an array or pytree of arrays, ``[T, B, ...]`` (``[B, T, ...]`` if not
        ``time_major``).
      initial_state: the state before the first step.
      time_major: whether time is the first axis of ``xs`` and of the outputs.
      reverse: run from the last step to the first (outputs stay in order).
      return_all_states: return the state after every step instead of the last.
      unroll: steps per loop iteration, as in ``jax.lax.scan``.

    Returns:
      ``(outputs, final_state)``, outputs with the layout of ``xs``; with
      ``return_all_states``, ``(outputs, states)``, states stacked like outputs.

    Example::

      def f(xs):                       # xs: [time, batch, features]
        core = mh.nn.LSTM(8)
        return mh.nn.dynamic_unroll(core, xs, core.initial_state(xs.shape[1]))

      xs = jnp.ones((5, 2, 3))
      f = mh.transform(f)
      outs, state = f.apply(f.init(0, xs), None, xs)   # outs: [5, 2, 8]
    """
    caller = "mh.nn.dynamic_unroll"
    _num_steps(xs, 0 if time_major else 1, caller)
    _check_layout(xs, initial_state, time_major, caller)

    def step(state, x):
        out, state = core(x, state)
        return state, ((out, state) if return_all_states else out)

    if not time_major:
        xs = _swap_batch_time(xs)
    scan = lifted.scan if transform_lib.inside_transform() else jax.lax.scan
    final_state, ys = scan(step, initial_state, xs, reverse=reverse, unroll=unroll)
    if return_all_states:
        outputs, states = ys
    else:
        outputs, states = ys, final_state
    if not time_major:
        outputs = _swap_batch_time(outputs)
        if return_all_states:
            states = _swap_batch_time(states)
    return outputs, states


def static_unroll(core: Core, xs: Any, initial_state: Any,
                  time_major: bool = True) -> tuple[Any, Any]:
    """Runs ``core`` over the time axis of ``xs`` with a Python loop.

    Same contract as :func:`dynamic_unroll` (without its extra options); under
    ``jax.jit`` the loop is unrolled into the program, one copy per step. Over
    zero steps it returns empty outputs (and ``initial_state``), as
    :func:`dynamic_unroll` does.

    Example::

      def f(xs):                       # xs: [time, batch, features]
        core = mh.nn.GRU(8)
        return mh.nn.static_unroll(core, xs, core.initial_state(xs.shape[1]))

      xs = jnp.ones((5, 2, 3))
      f = mh.transform(f)
      outs, h = f.apply(f.init(0, xs), None, xs)   # outs: [5, 2, 8]
    """
    time_axis = 0 if time_major else 1
    num_steps = _num_steps(xs, time_axis, "mh.nn.static_unroll")
    _check_layout(xs, initial_state, time_major, "mh.nn.static_unroll")
    if not num_steps:  # The outputs' shapes need a (traced) step: scan's.
        return dynamic_unroll(core, xs, initial_state, time_major)
    leaves, treedef = jax.tree_util.tree_flatten(xs)
    # Unstacking once gives JAX one slicing op (and an efficient VJP) per leaf.
    steps = [jnp.unstack(x, axis=time_axis) for x in leaves]
    state, outputs = initial_state, []
    for t in range(num_steps):
        x_t = jax.tree_util.tree_unflatten(treedef, [s[t] for s in steps])
        out, state = core(x_t, state)
        outputs.append(out)
    stacked = jax.tree_util.tree_map(lambda *ys: jnp.stack(ys, axis=time_axis), *outputs)
    return stacked, state
