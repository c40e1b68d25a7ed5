"""``multi_transform``: several entry points that share one set of params.

``f()`` builds modules and returns ``(template, fns)``: ``fns`` is a pytree of
functions (typically modules or their bound methods: an encoder and a
decoder, an actor and a critic) and ``template`` a function that uses them.

The rule is Haiku's: ``init(rng, *args)`` runs ``template(*args)`` and
nothing else, so the template must touch every param the entries need.
``apply`` is the same pytree as ``fns`` with ``apply(params, rng, *args)`` at
each entry: it runs ``f()`` and calls that entry. An entry reading a param
the template never made is a ``MissingParamError`` naming the entry and this
rule; no param is ever shaped by init's arguments on an entry's behalf.
"""

from collections.abc import Callable

import jax

from minihaiku import _transform as transform_lib
from minihaiku import errors
from minihaiku._transform import MultiTransformed, MultiTransformedWithState

__all__ = ["MultiTransformed", "MultiTransformedWithState", "multi_transform",
           "multi_transform_with_state"]


def multi_transform(f: Callable[[], tuple]) -> MultiTransformed:
    """Transforms the entry points ``fns`` of ``f() -> (template, fns)`` together.

    ``init`` runs only the template, which must touch every param the
    entries need (Haiku's rule).

    Example::

      def f():
        enc, dec = mh.nn.Linear(2, name="enc"), mh.nn.Linear(4, name="dec")
        return (lambda x: dec(enc(x))), {"encode": enc, "decode": dec}

      init, apply = mh.multi_transform(f)
      params = init(0, jnp.ones((1, 4)))
      z = apply["encode"](params, None, jnp.ones((1, 4)))
    """
    return MultiTransformed(*_build(f, with_state=False))


def multi_transform_with_state(f: Callable[[], tuple]) -> MultiTransformedWithState:
    """:func:`multi_transform` with state: ``init -> (params, state)``, entries
    ``apply(params, state, rng, *a) -> (out, state)``.

    Example::

      def f():
        bn = mh.nn.BatchNorm(0.9)
        return (lambda x: bn(x, True)), {"train": bn, "eval": bn}

      init, apply = mh.multi_transform_with_state(f)
      params, state = init(0, jnp.ones((2, 3)))
    """
    return MultiTransformedWithState(*_build(f, with_state=True))


def _build(f: Callable[[], tuple], with_state: bool) -> tuple:
    treedef = _structure(f)
    init, _ = transform_lib.pure_functions(
        lambda *a, **k: _template_and_fns(f)[0](*a, **k), with_state)
    entries = []
    for i, path in enumerate(_paths(treedef)):
        _, apply = transform_lib.pure_functions(_call_entry(f, i), with_state)
        entries.append(_naming_entry(apply, path))
    return init, treedef.unflatten(entries)


def _template_and_fns(f: Callable) -> tuple:
    built = f()
    if not (isinstance(built, tuple) and len(built) == 2 and callable(built[0])):
        raise errors.InvalidArgumentError(
            "mh.multi_transform(f): f() must return (template, fns), a function "
            f"and a pytree of functions; got {type(built).__name__}. Fix: end f "
            "with e.g. `return template, {'encode': enc, 'decode': dec}`.")
    return built


def _structure(f: Callable) -> jax.tree_util.PyTreeDef:
    """The pytree structure of ``fns``, from one abstract run of ``f()``."""
    found: list[jax.tree_util.PyTreeDef] = []

    def probe():
        _, fns = _template_and_fns(f)
        found.append(jax.tree_util.tree_structure(fns))

    init, _ = transform_lib.pure_functions(probe, with_state=True)
    jax.eval_shape(lambda: init(None))
    return found[0]


def _paths(treedef: jax.tree_util.PyTreeDef) -> list:
    leaves = treedef.unflatten([0] * treedef.num_leaves)
    return [jax.tree_util.keystr(p)
            for p, _ in jax.tree_util.tree_flatten_with_path(leaves)[0]]


def _call_entry(f: Callable, i: int) -> Callable:
    def run(*args, **kwargs):
        _, fns = _template_and_fns(f)
        return jax.tree_util.tree_leaves(fns)[i](*args, **kwargs)
    return run


def _naming_entry(apply: Callable, path: str) -> Callable:
    """``apply`` whose missing-param errors name the entry and init's rule."""

    def apply_fn(*args, **kwargs):
        try:
            return apply(*args, **kwargs)
        except errors.MissingParamError as e:
            raise errors.MissingParamError(
                f"Entry fns{path} of mh.multi_transform reads a param its init never "
                f"made. {e} The rule: init runs only the template, which must touch "
                "every param the entries need. Fix: call this entry from the template "
                "(e.g. `def template(obs, act): return actor(obs), critic(obs, act)`), "
                "and pass init the inputs the template takes.") from None

    return apply_fn
