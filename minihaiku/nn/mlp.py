"""``MLP``: a stack of ``Linear`` layers with an activation in between."""

from collections.abc import Callable, Iterable

import jax

from minihaiku import errors
from minihaiku.module import Module
from minihaiku.nn import _layer_args
from minihaiku.nn._dropout import dropout
from minihaiku.nn.linear import Linear
from minihaiku.params import Initializer


class MLP(Module):
    """A multi-layer perceptron.

    The ``Linear`` layers are built inside ``__call__``, so their params live
    at ``<module path>/__call__/Linear_<i>/__call__/{w,b}``. ``layers`` holds
    the ``Linear`` modules built by the latest call (empty before the first).

    Example::

      f = mh.transform(lambda x: mh.nn.MLP([16, 16, 1])(x))
      params = f.init(0, jnp.ones([4, 8]))
      # '~/MLP_0/__call__/Linear_2/__call__/w': (16, 1), ...
    """

    def __init__(self, output_sizes: Iterable[int],
                 activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
                 activate_final: bool = False, with_bias: bool = True,
                 w_init: Initializer | None = None,
                 b_init: Initializer | None = None,
                 name: str | None = None):
        """Builds the MLP.

        Args:
          output_sizes: the output size of each layer, in order.
          activation: applied after every layer but the last.
          activate_final: also apply ``activation`` after the last layer.
          with_bias: whether the layers have biases.
          w_init: ``w`` initializer of every layer (default as ``Linear``).
          b_init: ``b`` initializer of every layer (default zeros).
          name: module name, default ``MLP``.
        """
        super().__init__(name=name)
        self.output_sizes = tuple(output_sizes)
        if not self.output_sizes:
            raise errors.InvalidArgumentError(
                f"MLP at '{self.module_path}' got no output_sizes. Fix: pass "
                "the size of each layer, e.g. MLP([64, 64, 10]).")
        _layer_args.check_bias_init(self, with_bias, b_init)
        self.activation = activation
        self.activate_final = activate_final
        self.with_bias = with_bias
        self.w_init = w_init
        self.b_init = b_init
        self.layers: tuple = ()

    def __call__(self, x: jax.Array, dropout_rate: float | None = None,
                 is_training: bool = True) -> jax.Array:
        """Applies the layers to ``x``.

        Args:
          x: input of shape ``[..., in]``.
          dropout_rate: if given, dropout with this rate after every hidden
            layer (as Haiku's ``MLP``), drawing keys with ``mh.next_rng_key``.
          is_training: dropout is the identity when ``False``.

        Returns:
          The output, of shape ``[..., output_sizes[-1]]``.
        """
        last = len(self.output_sizes) - 1
        layers = []
        for i, size in enumerate(self.output_sizes):
            layers.append(Linear(size, self.with_bias, self.w_init, self.b_init))
            x = layers[-1](x)
            if i < last or self.activate_final:
                if dropout_rate is not None:
                    x = dropout(dropout_rate, x, is_training)
                x = self.activation(x)
        self.layers = tuple(layers)
        return x
