"""``Sequential``: layers applied one after another."""

from collections.abc import Callable, Iterable
from typing import Any

from minihaiku import errors
from minihaiku.module import Module


class Sequential(Module):
    """Calls ``layers`` in order: the first gets all the arguments, each next one
    the previous output (as Haiku's ``Sequential``).

    Layers may be modules or plain functions. ``Sequential`` has no params of
    its own: a module keeps the path of the place it was built (usually just
    before, at the caller's scope: ``~/Linear_0/__call__/w``); a plain function
    that creates params, or builds modules when called, puts them under
    ``<Sequential path>/__call__/`` (``~/Sequential_0/__call__/Linear_0/...``).

    Example::

      def f(x):
        return mh.nn.Sequential([mh.nn.Linear(8), jax.nn.relu, mh.nn.Linear(1)])(x)
      params = mh.transform(f).init(0, jnp.ones([2, 3]))  # ~/Linear_0/..., ~/Linear_1/...
    """

    def __init__(self, layers: Iterable[Callable[..., Any]], name: str | None = None):
        """Builds the container.

        Args:
          layers: callables (modules or functions), applied in order.
          name: module name, default ``Sequential``.
        """
        super().__init__(name=name)
        self.layers = tuple(layers)
        for i, layer in enumerate(self.layers):
            if not callable(layer):
                raise errors.InvalidArgumentError(
                    f"Sequential at '{self.module_path}': layer {i} is {layer!r}, not "
                    "callable. Fix: pass modules or functions, e.g. "
                    "[mh.nn.Linear(8), jax.nn.relu].")

    def __call__(self, inputs, *args, **kwargs):
        """Applies the layers; ``args``/``kwargs`` go to the first one only."""
        out = inputs
        for i, layer in enumerate(self.layers):
            out = layer(out, *args, **kwargs) if i == 0 else layer(out)
        return out
