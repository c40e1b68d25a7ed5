"""``multi_transform``: several entry points that share one set of params.

``f()`` builds modules and returns ``(template, fns)``: ``fns`` is a pytree of
functions (typically modules or their bound methods: an encoder and a
decoder, an actor and a critic) and ``template`` a function that uses them.

``init(rng, *args)`` runs ``template(*args)``, then makes sure every entry of
``fns`` has its params, so no entry can meet a missing param in apply:

* Each entry is tried with init's arguments in a scratch frame. If it runs,
  the params and state it created are kept (none, if the template already
  made them with the same shapes).
* If it raises, the entry takes other inputs than the template. That is fine
  when the template already called it: an entry that is a module, or a bound
  method of one, counts as called when the template created something under
  that module's path. Otherwise init fails and names the entry: call it from
  the template so init sees the inputs it takes.

So an entry the template does not call must take the template's arguments
(as every ``cond`` branch takes the same operands). ``apply`` is the same
pytree with ``apply(params, rng, *args)`` at each entry: it runs ``f()`` and
calls that entry.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax

from minihaiku import errors
from minihaiku import frame as frame_lib
from minihaiku import module as module_lib
from minihaiku import transform as transform_lib


class MultiTransformed(NamedTuple):
    """``init(rng, *a) -> params``; ``apply``: a pytree of ``apply(params, rng, *a)``."""
    init: Callable[..., dict]
    apply: Any


class MultiTransformedWithState(NamedTuple):
    """``init -> (params, state)``; ``apply``: a pytree of ``(params, state, rng, *a)``."""
    init: Callable[..., tuple]
    apply: Any


def multi_transform(f: Callable[[], tuple]) -> MultiTransformed:
    """Transforms the entry points ``fns`` of ``f() -> (template, fns)`` together.

    Example::

      def f():
        enc, dec = mh.nn.Linear(2, name="enc"), mh.nn.Linear(4, name="dec")
        return (lambda x: dec(enc(x))), {"encode": enc, "decode": dec}

      init, apply = mh.multi_transform(f)
      params = init(0, jnp.ones((1, 4)))
      z = apply["encode"](params, None, jnp.ones((1, 4)))
    """
    treedef = _structure(f, allow_state=False)

    def init_fn(rng: Any, *args: Any, **kwargs: Any) -> dict:
        frame = _init(f, rng, args, kwargs, allow_state=False)
        return frame.params

    def entry(i: int) -> Callable:
        def apply_fn(params, rng, *args, **kwargs):
            params = transform_lib._mapping(params, "params", "apply(params, rng, *args)")
            out, _ = transform_lib._run(_call_entry(f, i), args, kwargs, params, {}, rng,
                                        False, False)
            return out
        return apply_fn

    return MultiTransformed(init_fn, treedef.unflatten(
        [entry(i) for i in range(treedef.num_leaves)]))


def multi_transform_with_state(f: Callable[[], tuple]) -> MultiTransformedWithState:
    """:func:`multi_transform` with state: ``init -> (params, state)``, entries
    ``apply(params, state, rng, *a) -> (out, state)``."""
    treedef = _structure(f, allow_state=True)

    def init_fn(rng: Any, *args: Any, **kwargs: Any) -> tuple:
        frame = _init(f, rng, args, kwargs, allow_state=True)
        return frame.params, frame.initial_state

    def entry(i: int) -> Callable:
        def apply_fn(params, state, rng, *args, **kwargs):
            call = "apply(params, state, rng, *args)"
            params = transform_lib._mapping(params, "params", call)
            state = dict(transform_lib._mapping(state, "state", call))
            out, frame = transform_lib._run(_call_entry(f, i), args, kwargs, params, state,
                                            rng, False, True)
            return out, frame.state
        return apply_fn

    return MultiTransformedWithState(init_fn, treedef.unflatten(
        [entry(i) for i in range(treedef.num_leaves)]))


def _build(f: Callable) -> tuple:
    built = f()
    if not (isinstance(built, tuple) and len(built) == 2 and callable(built[0])):
        raise errors.InvalidArgumentError(
            "mh.multi_transform(f): f() must return (template, fns), a function "
            f"and a pytree of functions; got {type(built).__name__}. Fix: end f "
            "with e.g. `return template, {'encode': enc, 'decode': dec}`.")
    return built


def _structure(f: Callable, allow_state: bool) -> jax.tree_util.PyTreeDef:
    """The pytree structure of ``fns``, from one abstract run of ``f()``."""
    found: list[jax.tree_util.PyTreeDef] = []

    def probe():
        _, fns = _build(f)
        found.append(jax.tree_util.tree_structure(fns))

    jax.eval_shape(lambda: transform_lib._run(
        probe, (), {}, {}, {}, jax.random.PRNGKey(0), True, allow_state)[0])
    return found[0]


def _call_entry(f: Callable, i: int) -> Callable:
    def run(*args, **kwargs):
        _, fns = _build(f)
        return jax.tree_util.tree_leaves(fns)[i](*args, **kwargs)
    return run


def _init(f: Callable, rng: Any, args: Sequence, kwargs: Mapping,
          allow_state: bool) -> frame_lib.Frame:
    def run():
        template, fns = _build(f)
        frame = frame_lib.current_frame("mh.multi_transform")
        after_f = dict(frame.counters)
        template(*args, **kwargs)
        for path, fn in jax.tree_util.tree_flatten_with_path(fns)[0]:
            _create_entry(frame, jax.tree_util.keystr(path), fn, after_f, args, kwargs)

    _, frame = transform_lib._run(run, (), {}, {}, {}, rng, True, allow_state)
    return frame


def _create_entry(frame: frame_lib.Frame, name: str, fn: Callable, counters: dict,
                  args: Sequence, kwargs: Mapping) -> None:
    """Runs entry ``fn`` with init's arguments in a scratch frame; keeps what it made."""
    scratch = frame_lib.Frame(dict(frame.params), dict(frame.state), frame.rng, True,
                              frame.allow_state, "~", dict(counters), frame.run)
    frame_lib.push(scratch)
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001  Any failure: the inputs do not fit.
        if _called_by_template(frame, fn):
            return
        raise errors.InvalidArgumentError(
            f"mh.multi_transform: the template did not call entry fns{name}, and "
            f"calling it with init's arguments failed ({type(e).__name__}: {e}), so "
            "init cannot create its params. Fix: call it from the template with the "
            "inputs it takes (e.g. `def template(x): return decode(encode(x))`); if "
            "it does, make the entry the module or its bound method, not a plain "
            "function, so init can see what the template made for it.") from e
    finally:
        frame_lib.pop(scratch)
    for kind in ("params", "state"):
        mine, made = getattr(frame, kind), getattr(scratch, kind)
        mine.update((k, v) for k, v in made.items() if k not in mine)
    frame.initial_state.update(scratch.initial_state)


def _called_by_template(frame: Any, fn: Callable) -> bool:
    owner = fn if isinstance(fn, module_lib.Module) else getattr(fn, "__self__", None)
    if not isinstance(owner, module_lib.Module):
        return False
    prefix = owner.module_path + "/"
    return any(p.startswith(prefix) for p in (*frame.params, *frame.state))
