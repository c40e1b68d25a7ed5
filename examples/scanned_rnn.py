r"""An LSTM, unrolled with ``mh.lifted.scan``, predicts the next value of noisy sine waves.

Every training batch holds fresh sine waves of random phase and frequency
with Gaussian noise; at each time step the network (an ``mh.nn.LSTM`` and an
``mh.nn.Linear`` read-out) predicts the next value. The time loop is one
``mh.lifted.scan``: the LSTM's params are created once, in ``init``, and
shared by every step. ``--remat`` wraps the step in ``mh.lifted.remat``, which
recomputes each step's activations in the backward pass instead of storing
them (same values and gradients). ``mh.nn.dynamic_unroll`` packages the same
loop.

  python examples/scanned_rnn.py --plot_path=/tmp/rnn.png
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging

import cli
import minihaiku as mh

_STEPS = flags.DEFINE_integer("steps", 1000, "Training steps.")
_HIDDEN_SIZE = flags.DEFINE_integer("hidden_size", 32, "LSTM hidden size.")
_SEQUENCE_LENGTH = flags.DEFINE_integer("sequence_length", 40, "Time steps per sequence.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Sequences per batch.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.01, "Adam learning rate.")
_NOISE = flags.DEFINE_float("noise", 0.05, "Stddev of the noise added to the waves.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the init and of the data.")
_REMAT = flags.DEFINE_bool("remat", False, "Wrap the scanned step in mh.lifted.remat.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 100, "Log the loss every this many steps.")
_PLOT_PATH = flags.DEFINE_string("plot_path", None,
                                 "Write a PNG of one sequence and its predictions here.")
_CHECKPOINT_PATH = flags.DEFINE_string("checkpoint_path", None,
                                       "Save the trained params here with mh.io.save.")
_SUMMARY = flags.DEFINE_bool("summary", False, "Log a table of the params before training.")

_DT = 0.2  # Time between two samples; a wave's period spans 21 to 63 samples.


def sine_waves(key, batch_size: int, length: int, noise: float) -> tuple:
    """``(noisy, clean)`` waves, each ``[length + 1, batch_size, 1]`` (time major)."""
    k_freq, k_phase, k_noise = jax.random.split(key, 3)
    freq = jax.random.uniform(k_freq, (1, batch_size, 1), minval=0.5, maxval=1.5)
    phase = jax.random.uniform(k_phase, (1, batch_size, 1), maxval=2 * np.pi)
    t = jnp.arange(length + 1, dtype=jnp.float32)[:, None, None] * _DT
    clean = jnp.sin(freq * t + phase)
    return clean + noise * jax.random.normal(k_noise, clean.shape), clean


def make_network(hidden_size: int, remat: bool) -> mh.Transformed:
    """``apply(params, xs [T, B, 1]) -> predictions [T, B, 1]`` of the next values."""

    def forward(xs):
        core = mh.nn.LSTM(hidden_size)
        readout = mh.nn.Linear(1)

        def step(state, x):
            h, state = core(x, state)
            return state, readout(h)

        if remat:
            step = mh.lifted.remat(step)
        _, predictions = mh.lifted.scan(step, core.initial_state(xs.shape[1]), xs)
        return predictions

    return mh.without_apply_rng(mh.transform(forward))


def train(steps: int, hidden_size: int = 32, sequence_length: int = 40, batch_size: int = 32,
          learning_rate: float = 0.01, noise: float = 0.05, seed: int = 0,
          remat: bool = False, log_every: int = 100) -> tuple:
    """Trains the LSTM; returns ``(params, losses)``.

    ``losses`` are ``(step, loss)`` pairs of the loss on a fixed evaluation
    batch: before training (step 0), every ``log_every`` steps, and after the
    last step.
    """
    net = make_network(hidden_size, remat)
    tx = optax.adam(learning_rate)
    init_key, data_key, eval_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    eval_noisy, _ = sine_waves(eval_key, batch_size, sequence_length, noise)
    params = jax.jit(net.init)(init_key, eval_noisy[:-1])
    opt_state = tx.init(params)

    def loss_fn(params, noisy):
        return jnp.mean((net.apply(params, noisy[:-1]) - noisy[1:]) ** 2)

    @jax.jit
    def update(params, opt_state, key):
        noisy, _ = sine_waves(key, batch_size, sequence_length, noise)
        loss, grads = jax.value_and_grad(loss_fn)(params, noisy)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    eval_loss = jax.jit(loss_fn)
    losses = []
    for i in range(steps):
        if log_every and i % log_every == 0:
            losses.append((i, float(eval_loss(params, eval_noisy))))
            logging.info("step %d loss %.6f", i, losses[-1][1])
        params, opt_state, _ = update(params, opt_state, jax.random.fold_in(data_key, i))
    losses.append((steps, float(eval_loss(params, eval_noisy))))
    return params, losses


def plot(path: str, params, hidden_size: int, sequence_length: int, noise: float) -> None:
    """Plots one evaluation wave: noisy input, clean wave, next-value predictions."""
    import matplotlib  # Only needed for --plot_path.
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    noisy, clean = sine_waves(jax.random.PRNGKey(1234), 1, sequence_length, noise)
    predictions = make_network(hidden_size, False).apply(params, noisy[:-1])
    t = np.arange(sequence_length + 1) * _DT
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, clean[:, 0, 0], label="clean wave", color="gray")
    ax.scatter(t, noisy[:, 0, 0], s=10, label="noisy input")
    ax.scatter(t[1:], predictions[:, 0, 0], s=10, label="predicted next value")
    ax.set_xlabel("time")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logging.info("wrote plot to %s", path)


def main(argv):
    del argv  # Unused.
    cli.quiet_logs()
    start = time.perf_counter()
    if _SUMMARY.value:
        xs = jax.ShapeDtypeStruct((_SEQUENCE_LENGTH.value, _BATCH_SIZE.value, 1), jnp.float32)
        logging.info("params:\n%s", mh.summary(make_network(_HIDDEN_SIZE.value, _REMAT.value), xs))
    params, losses = train(_STEPS.value, _HIDDEN_SIZE.value, _SEQUENCE_LENGTH.value,
                           _BATCH_SIZE.value, _LEARNING_RATE.value, _NOISE.value, _SEED.value,
                           _REMAT.value, _LOG_EVERY.value)
    elapsed = time.perf_counter() - start
    logging.info("first loss %.6f, final loss %.6f after %d steps (%.1f s)",
                 losses[0][1], losses[-1][1], _STEPS.value, elapsed)
    if _CHECKPOINT_PATH.value:
        mh.io.save(_CHECKPOINT_PATH.value, params)
        logging.info("saved params to %s", _CHECKPOINT_PATH.value)
    if _PLOT_PATH.value:
        plot(_PLOT_PATH.value, params, _HIDDEN_SIZE.value, _SEQUENCE_LENGTH.value, _NOISE.value)


if __name__ == "__main__":
    app.run(main)
