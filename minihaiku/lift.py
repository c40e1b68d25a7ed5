"""``lift``: another transform's params, living inside this one's.

``mh.lift(inner.init, name)(*args)`` runs ``inner.init(*args)`` once, during
the outer ``init``, and stores its params under ``<scope>/<name>/...`` (the
inner path ``~/Linear_0/__call__/w`` becomes ``<scope>/<name>/Linear_0/
__call__/w``). In the outer ``apply`` it runs nothing and reads them back.
Either way it returns the inner params, ready for ``inner.apply``: a
separately built (or pretrained) model becomes part of a bigger one, and its
params are trained, saved and sharded with the rest.
"""

from collections.abc import Callable, Mapping
from typing import Any

from minihaiku import checks, errors
from minihaiku import frame as frame_lib


def lift(init_fn: Callable[..., Mapping], name: str = "lifted") -> Callable[..., dict]:
    """Registers the params made by ``init_fn`` under ``<scope>/<name>``.

    Args:
      init_fn: the ``init`` of another ``mh.transform`` (returns a params dict).
      name: the path segment the inner params live under.

    Returns:
      A function taking ``init_fn``'s arguments and returning the inner params
      (created in the outer ``init``, read back in the outer ``apply``). A
      second call in the same scope reuses them, as a module called twice does.

    Example::

      inner = mh.transform(lambda x: mh.nn.Linear(3)(x))

      def f(x):
        params = mh.lift(inner.init, name="body")(mh.next_rng_key(), x)
        return inner.apply(params, None, x)      # '~/body/Linear_0/__call__/w'
    """

    def lifted(*args: Any, **kwargs: Any) -> dict:
        frame = frame_lib.current_frame("mh.lift")
        prefix = f"{frame.scope}/{name}"
        checks.check_name("mh.lift", name, f"in '{frame.scope}'")
        existing = _read(frame.params, prefix + "/")
        if existing or not frame.is_init:
            return existing
        frame_lib.check_trace(frame, "mh.lift", prefix)
        inner = init_fn(*args, **kwargs)
        if not isinstance(inner, Mapping) or not all(
                isinstance(p, str) and p.startswith("~/") for p in inner):
            raise errors.InvalidArgumentError(
                f"mh.lift(..., name={name!r}) at '{prefix}': init_fn must return the "
                f"params dict of mh.transform(...).init, got {type(inner).__name__}. "
                "Fix: pass inner.init of a mh.transform (state is not lifted).")
        for path, value in inner.items():
            frame.params[prefix + path[1:]] = value
        return dict(inner)

    return lifted


def _read(params: Mapping, prefix: str) -> dict:
    """The params under ``prefix`` with their inner paths (``~/...``)."""
    cut = len(prefix)
    return {"~/" + p[cut:]: v for p, v in params.items() if p.startswith(prefix)}
