"""``MLP``: dm-haiku's ``hk.nets.MLP``, with ``reverse()``."""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax

from minihaiku import errors
from minihaiku import rng as rng_lib
from minihaiku.module import Module
from minihaiku.nets import _config
from minihaiku.nn import dropout
from minihaiku.nn.linear import Linear
from minihaiku.params import Initializer


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """What an ``MLP`` computes (fields in ``hk.nets.MLP``'s order).

    Attributes:
      output_sizes: the output size of each ``Linear`` layer.
      w_init: ``w`` initializer of every layer (default as ``mh.nn.Linear``).
      b_init: ``b`` initializer of every layer (default zeros).
      with_bias: whether the layers have biases.
      activation: applied between layers.
      activate_final: also apply ``activation`` after the last layer.
    """

    output_sizes: Sequence[int]
    w_init: Initializer | None = None
    b_init: Initializer | None = None
    with_bias: bool = True
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu
    activate_final: bool = False

    def __post_init__(self):
        _config.freeze(self, "output_sizes")
        _config.check(bool(self.output_sizes) and all(
            isinstance(s, int) and s > 0 for s in self.output_sizes), self,
            f"output_sizes={self.output_sizes!r} must be positive ints, at least one. "
            "Fix: e.g. output_sizes=(64, 10).")
        _config.check(self.with_bias or self.b_init is None, self,
                      "b_init is set but with_bias=False. Fix: drop b_init.")


class MLP(Module):
    """A multi-layer perceptron, as dm-haiku's ``hk.nets.MLP``.

    Its ``Linear`` layers are built in ``__init__`` and named ``linear_<i>``
    (as Haiku's), so params live at
    ``<module path>/__init__/linear_<i>_0/__call__/{w,b}``. Build it from an
    ``MLPConfig`` or from the config's fields: ``MLP([64, 10])``.

    Example::

      f = mh.transform(lambda x: mh.nets.MLP([8, 2])(x))
      params = f.init(0, jnp.ones([3, 4]))
      # '~/MLP_0/__init__/linear_1_0/__call__/w': (8, 2)
    """

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any):
        """Builds the layers.

        Args:
          *args: an ``MLPConfig``, or its fields (``output_sizes, w_init, ...``).
          name: module name, default ``MLP``.
          **kwargs: config fields by name.
        """
        super().__init__(name=name)
        self.config = config = _config.make_config(MLPConfig, "mh.nets.MLP", args, kwargs)
        self.layers = tuple(
            Linear(size, config.with_bias, config.w_init, config.b_init, name=f"linear_{i}")
            for i, size in enumerate(config.output_sizes))
        self.output_size = config.output_sizes[-1]

    def __call__(self, x: jax.Array, dropout_rate: float | None = None,
                 rng: jax.Array | None = None) -> jax.Array:
        """Applies the layers to ``x``.

        Args:
          x: input of shape ``[..., in]``.
          dropout_rate: if given, dropout with this rate before every
            activation (as Haiku's).
          rng: the dropout key; default ``mh.next_rng_key()``.

        Returns:
          The output, of shape ``[..., output_sizes[-1]]``.
        """
        if dropout_rate is not None and rng is not None:
            with rng_lib.with_rng(rng):
                return self._layers(x, dropout_rate)
        return self._layers(x, dropout_rate)

    def _layers(self, x: jax.Array, dropout_rate: float | None) -> jax.Array:
        config, last = self.config, len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last or config.activate_final:
                if dropout_rate is not None:
                    x = dropout(dropout_rate, x)
                x = config.activation(x)
        return x

    def reverse(self, activate_final: bool | None = None, name: str | None = None) -> "MLP":
        """An MLP mapping this one's output size back to its input size.

        Layer ``i`` of the result has the input size of layer ``n-1-i`` here,
        so this MLP must have been called. The two share no params.

        Args:
          activate_final: default this MLP's.
          name: default ``<this module's name>_reversed`` (as Haiku).

        Returns:
          A new ``MLP``.
        """
        sizes = tuple(layer.input_size or 0 for layer in reversed(self.layers))
        if not all(sizes):
            raise errors.ModuleInputError(
                f"MLP at '{self.module_path}' cannot be reversed before it is called: "
                "the layers' input sizes are only known then. Fix: call it first, "
                "e.g. y = mlp(x); rev = mlp.reverse().")
        config = self.config
        if activate_final is None:
            activate_final = config.activate_final
        if name is None:
            name = self.module_name.rsplit("_", 1)[0] + "_reversed"
        return MLP(dataclasses.replace(config, output_sizes=sizes,
                                       activate_final=activate_final), name=name)
