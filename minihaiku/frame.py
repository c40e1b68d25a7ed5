"""The frame stack: what a transformed function is doing right now.

A :class:`Frame` is pushed when ``init`` or ``apply`` starts running the
user's function and popped when it returns or raises (:func:`running`, the
one frame runner used by the transforms, the lifted transforms and
``multi_transform``). It holds the params and state being read or created,
the key sequence, whether we are initialising, the naming scope of the module
method running, and the interceptors in force. The stack is thread-local, so
transforms running in different threads never see each other's frames; it is
one of the library's two thread-local stores (the other: the eager cache's
switch).
"""

import contextlib
import os
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

from jax.extend.core import find_top_trace, get_opaque_trace_state

from minihaiku import errors


class Frame:
    """Everything a transformed function reads and writes while it runs.

    Attributes:
      params: path -> array. Read in apply; filled in init.
      state: path -> current value of each state entry.
      initial_state: path -> value as first created (init only).
      rng: a ``PRNGSequence`` or ``None``.
      is_init: whether we are running ``init``.
      allow_state: ``False`` under ``mh.transform``.
      scope: the path prefix of the module method running, e.g. ``~/MLP_0/__call__``.
      counters: module name -> instances built so far in this method call.
      owner: the path state entries go under: the module whose method runs
        (``~/MLP_0``: state belongs to the module, as in Haiku, whichever of
        its methods reads or writes it), plus any ``name_scope`` inside it.
      trace: the JAX trace this frame was pushed in; touching params, state or
        keys from another trace means a raw JAX transform is in between.
      run_id: identifies one call of ``init`` or ``apply``. The frames a lifted
        transform pushes inside it pass the outer frame's ``run_id`` on, so they
        belong to the same run; a module built in one run may be called only
        in that run.
      init_owner: the module whose ``__init__`` is running (its submodules
        go under ``<path>/__init__``), or ``None``.
      hooks: the interceptors in force (a ``minihaiku.interceptors.Hooks``),
        or ``None``: then every access takes the plain fast path.
      axes: path -> logical axes of the params created with ``axes=`` in this
        run (creation metadata, shared by the run's lifted frames).
    """

    __slots__ = ("params", "state", "initial_state", "rng", "is_init",
                 "allow_state", "scope", "owner", "counters", "trace", "run_id",
                 "init_owner", "hooks", "axes")

    def __init__(self, params: Any, state: Any, rng: Any, is_init: bool, allow_state: bool,
                 scope: str = "~", counters: dict | None = None,
                 run_id: "RunId | None" = None, owner: str | None = None,
                 hooks: Any = None, axes: dict | None = None):
        self.params = params
        self.state = state
        self.initial_state: dict = {}
        self.rng = rng
        self.is_init = is_init
        self.allow_state = allow_state
        self.scope = scope
        self.owner = scope if owner is None else owner
        self.counters = {} if counters is None else counters
        self.trace = get_opaque_trace_state()
        self.run_id = RunId() if run_id is None else run_id
        self.init_owner = None
        self.hooks = hooks
        self.axes = {} if axes is None else axes


class RunId:
    """The identity of one call of ``init`` or ``apply`` (compared with ``is``)."""

    __slots__ = ()


class _Stack(threading.local):
    def __init__(self):
        self.frames: list = []
        # One list per active `observing()` block: the transform runs that
        # finish directly inside it.
        self.observers: list = []


_STACK = _Stack()


def frames() -> list:
    """The calling thread's frame stack (innermost last)."""
    return _STACK.frames


def current_frame(caller: str) -> Frame:
    """The innermost frame, or a clear error naming ``caller`` if there is none."""
    stack = _STACK.frames
    if not stack:
        raise errors.NotInTransformError(
            f"{caller} must be called inside a function transformed by "
            "mh.transform or mh.transform_with_state. Fix: wrap the code that "
            "calls it, e.g. `init, apply = mh.transform(f)`, then call "
            "`init(rng, x)` / `apply(params, rng, x)`.")
    return stack[-1]


def check_trace(frame: Frame, caller: str, path: str) -> None:
    """Refuses a raw JAX transform between ``frame``'s push and this call."""
    if get_opaque_trace_state() != frame.trace:
        raw, fix = _raw_transform()
        raise errors.UnliftedTransformError(
            f"{caller} for '{path}' was called inside {raw}, a raw JAX "
            "transform that sits inside the transformed function. Params, "
            f"state and rng keys would leak out of it as tracers. Fix: {fix}")


# The code name of a JAX entry point (in jax/_src) -> (what the user called,
# the fix). Only read when raising, so its cost never matters.
_RAW = {code: (name, f"use mh.lifted.{lifted} instead of {name}.")
        for code, name, lifted in [
            ("vmap_f", "jax.vmap", "vmap"), ("scan", "jax.lax.scan", "scan"),
            ("fori_loop", "jax.lax.fori_loop", "fori_loop"),
            ("while_loop", "jax.lax.while_loop", "while_loop"),
            ("cond", "jax.lax.cond", "cond"), ("switch", "jax.lax.switch", "switch"),
            ("fun_remat", "jax.checkpoint", "remat")]}
_RAW["cache_miss"] = ("jax.jit", "drop the inner jax.jit and jit the whole "
                      "init/apply instead, e.g. jax.jit(apply) (mh.lifted has "
                      "no jit: a jit inside a jit adds nothing).")
_RAW["grad_f"] = ("jax.grad", "use mh.lifted.grad instead of jax.grad (it differentiates "
                  "w.r.t. the arguments, params closed over), or differentiate the "
                  "whole apply, e.g. jax.grad(lambda params: loss(apply(params, rng, "
                  "x)))(params).")
_RAW["value_and_grad_f"] = ("jax.value_and_grad", "use mh.lifted.value_and_grad "
                            "instead of jax.value_and_grad, or differentiate the "
                            "whole apply.")
for _code in ("vjp", "jvp", "linearize", "jacfun", "jacrev", "jacfwd", "hessian"):
    _RAW[_code] = ("a JAX autodiff transform (jax.vjp, jax.jvp, jax.jacrev, ...)",
                   "use mh.lifted.grad / value_and_grad for gradients w.r.t. "
                   "inputs, or differentiate the whole apply, e.g. jax.jacrev("
                   "lambda params: apply(params, rng, x))(params).")
_UNKNOWN_RAW = (
    "a JAX transform (jax.jit, jax.vmap, jax.grad, jax.checkpoint, "
    "jax.lax.scan, jax.lax.cond, ...)",
    "use the lifted version from mh.lifted (scan, remat, vmap, cond, switch, "
    "fori_loop, while_loop, layer_stack, grad, value_and_grad), or apply the JAX transform to the "
    "whole init/apply instead (e.g. jax.jit(apply)).")


def _raw_transform() -> tuple:
    """Names the raw JAX transform the caller is in, from the Python stack.

    Takes the outermost known entry point of the innermost run of JAX frames
    (``fori_loop``, not the ``scan`` it calls); unknown ones get a generic
    message, so a renamed JAX internal only makes the message vaguer.
    """
    found = None
    f: types.FrameType | None = sys._getframe(2)
    while f is not None:
        in_jax = f"{os.sep}jax{os.sep}" in f.f_code.co_filename
        if in_jax and f.f_code.co_name in _RAW:
            found = _RAW[f.f_code.co_name]
        elif not in_jax and found is not None:
            return found
        f = f.f_back
    return found or _UNKNOWN_RAW


def is_eager() -> bool:
    """Whether nothing is tracing here: JAX would compute each op at once.

    Relies on JAX naming its innermost trace ``EvalTrace`` when nothing
    traces; ``tests/test_frame.py`` fails loudly if a JAX upgrade changes that.
    """
    return type(find_top_trace(())).__name__ == "EvalTrace"


@contextlib.contextmanager
def running(frame: Frame, observed: bool = False) -> Iterator[Frame]:
    """Pushes ``frame`` for the block and pops it however the block ends.

    With ``observed`` (a transform's own run, not a lifted one), the frame is
    handed, once popped, to the innermost :func:`observing` block that is
    open at this depth of the stack.
    """
    stack = _STACK.frames
    stack.append(frame)
    try:
        yield frame
    finally:
        popped = stack.pop()
        assert popped is frame, "minihaiku frame stack out of order"
    observers = _STACK.observers
    if observed and observers and observers[-1][0] == len(stack):
        observers[-1][1].append(frame)


@contextlib.contextmanager
def observing() -> Iterator[list]:
    """Yields a list that receives the frame of every transform run finished in the block.

    Only runs started directly in the block count, not runs nested in them
    (a lifted model's own ``init``): ``mh.lift`` and the shape-only init use
    it to read what a run recorded besides its params (logical axes).
    """
    found: list = []
    observers = _STACK.observers
    observers.append((len(_STACK.frames), found))
    try:
        yield found
    finally:
        observers.pop()
