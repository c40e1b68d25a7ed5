r"""The "Build your own Haiku" tutorial's experiment, with minihaiku.

An ``MLP([128, 128, 1])`` with sigmoid activations learns ``y = x**2`` on 128
points in ``[-2, 2]``, by plain gradient descent (or Adam), as in the last
cells of the tutorial.

  python examples/quadratic_mlp.py --plot_path=/tmp/quadratic.png

By default every weight and bias starts from a standard normal, like the
tutorial's ``get_param``; ``--init=default`` uses ``Linear``'s own init
(truncated normal with stddev ``1/sqrt(fan_in)``, zero bias), which SGD at this
learning rate fits far more slowly (try it with ``--optimizer=adam``).
"""

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

import cli
import minihaiku as mh

_STEPS = flags.DEFINE_integer("steps", 5000, "Training steps.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.003, "Learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the param init.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"],
                               "sgd (as the tutorial) or adam (needs optax).")
_INIT = flags.DEFINE_enum("init", "tutorial", ["tutorial", "default"],
                          "tutorial: standard normal w and b; default: Linear's init.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 500, "Log the loss every this many steps.")
_PLOT_PATH = flags.DEFINE_string("plot_path", None, "Write a PNG of data vs prediction here.")
_CHECKPOINT_PATH = flags.DEFINE_string("checkpoint_path", None,
                                       "Save the trained params here with mh.io.save.")
_SUMMARY = flags.DEFINE_bool("summary", False, "Log a table of the params before training.")


class Optimizer(NamedTuple):
    """``init(params) -> state``; ``update(grads, state, params) -> (params, state)``."""
    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple]


def make_data() -> tuple:
    """The tutorial's data: 128 points of ``y = x**2``, shaped ``[128, 1]``."""
    xs = np.linspace(-2.0, 2.0, num=128, dtype=np.float32)[:, None]
    return xs, xs ** 2


def make_network(init: str = "tutorial") -> mh.Transformed:
    """The tutorial's ``MLP([128, 128, 1])``: sigmoid between layers, none after the last."""
    if init == "tutorial":
        # The tutorial draws every param, biases included, from N(0, 1).
        w_init = b_init = jax.nn.initializers.normal(stddev=1.0)
    else:
        w_init = b_init = None

    def mlp(x):
        return mh.nn.MLP([128, 128, 1], activation=jax.nn.sigmoid,
                         w_init=w_init, b_init=b_init)(x)

    return mh.without_apply_rng(mh.transform(mlp))


def make_optimizer(name: str, learning_rate: float) -> Optimizer:
    """Plain gradient descent (the tutorial's update), or Adam from optax."""
    if name == "sgd":
        def update(grads, opt_state, params):
            params = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads)
            return params, opt_state

        return Optimizer(lambda params: (), update)
    try:
        import optax  # Only needed for --optimizer=adam.
    except ImportError as e:
        raise app.UsageError("--optimizer=adam needs optax: pip install optax") from e
    tx = optax.adam(learning_rate)

    def adam_update(grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return Optimizer(tx.init, adam_update)


def make_step(net: mh.Transformed, optimizer: Optimizer) -> Callable:
    """``step(params, opt_state, x, y) -> (params, opt_state, loss)`` (not jitted)."""

    def loss_fn(params, x, y):
        return jnp.mean((net.apply(params, x) - y) ** 2)

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    return step


def fit(step: Callable, params, opt_state, xs, ys, steps: int, log_every: int) -> tuple:
    """Runs ``steps`` steps of the jitted ``step``; returns ``(params, [(step, loss)])``.

    The losses are those before each logged step's update, plus the loss of
    the final params (at ``step == steps``).
    """
    losses = []
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, xs, ys)
        if log_every and i % log_every == 0:
            losses.append((i, float(loss)))
            logging.info("step %d loss %.6f", i, losses[-1][1])
    # One more forward pass (the update is discarded) gives the final loss.
    _, _, loss = step(params, opt_state, xs, ys)
    losses.append((steps, float(loss)))
    return params, losses


def plot(path: str, xs, ys, predictions, title: str) -> None:
    """Writes the tutorial's last figure: data and prediction as scatter plots."""
    import matplotlib  # Only needed for --plot_path.
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, ys, label="Data")
    ax.scatter(xs, predictions, label="Model prediction")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logging.info("wrote plot to %s", path)


def main(argv):
    del argv  # Unused.
    cli.quiet_logs()
    start = time.perf_counter()
    xs, ys = make_data()
    net = make_network(_INIT.value)
    optimizer = make_optimizer(_OPTIMIZER.value, _LEARNING_RATE.value)
    if _SUMMARY.value:
        logging.info("params:\n%s", mh.summary(net, xs))
    # Jitted init gives the very params of eager init, in one compiled call.
    params = jax.jit(net.init)(jax.random.PRNGKey(_SEED.value), xs)
    step = jax.jit(make_step(net, optimizer))
    params, losses = fit(step, params, optimizer.init(params), xs, ys,
                         _STEPS.value, _LOG_EVERY.value)
    elapsed = time.perf_counter() - start
    logging.info("final loss %.6f after %d steps (%.1f s)", losses[-1][1], _STEPS.value, elapsed)
    if _CHECKPOINT_PATH.value:
        mh.io.save(_CHECKPOINT_PATH.value, params)
        logging.info("saved params to %s", _CHECKPOINT_PATH.value)
    if _PLOT_PATH.value:
        plot(_PLOT_PATH.value, xs, ys, net.apply(params, xs),
             f"MLP fit of x**2, final MSE {losses[-1][1]:.4f}")


if __name__ == "__main__":
    app.run(main)
