r"""A small convnet on scikit-learn's bundled 8x8 digits.

Conv2D + BatchNorm (moving statistics in state) + max_pool + dropout + Linear,
trained with optax Adam on a fixed 75/25 train/test split of
``sklearn.datasets.load_digits`` (1797 images shipped inside scikit-learn: no
download).

  python examples/digits_cnn.py --plot_path=/tmp/digits.png

``--checkpoint_path`` saves params, state, optimizer state and step with
``mh.io`` after training, and resumes from that file when it exists.
"""

import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging

import cli
import minihaiku as mh

_STEPS = flags.DEFINE_integer("steps", 300, "Training steps.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 2e-3, "Adam learning rate.")
_DROPOUT = flags.DEFINE_float("dropout", 0.3, "Dropout rate before the classifier.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the init, the batches and dropout.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 250, "Log losses every this many steps.")
_PLOT_PATH = flags.DEFINE_string(
    "plot_path", None, "Write a PNG of the confusion matrix and misclassified digits here.")
_CHECKPOINT_PATH = flags.DEFINE_string(
    "checkpoint_path", None, "Resume from this mh.io file if it exists; save to it at the end.")


class Data(NamedTuple):
    """Images ``[N, 8, 8, 1]`` in ``[0, 1]`` and integer labels ``[N]``."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


class TrainState(NamedTuple):
    params: Any
    state: Any
    opt_state: Any
    step: Any


def load_data() -> Data:
    """The digits, split 75/25 with a fixed permutation (the same on every run)."""
    from sklearn.datasets import load_digits  # Only the examples need scikit-learn.

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 4
    test, train = order[:n_test], order[n_test:]
    return Data(x[train], y[train], x[test], y[test])


def convnet(x: jax.Array, is_training: bool) -> jax.Array:
    """Two conv blocks with batch norm, a max pool, dropout and two Linears."""
    for channels in (32, 64):
        x = mh.nn.Conv2D(channels, kernel_shape=3)(x)
        x = mh.nn.BatchNorm(decay_rate=0.9)(x, is_training)
        x = jax.nn.relu(x)
    x = mh.nn.max_pool(x, window_shape=2, strides=2, padding="VALID")   # 8x8 -> 4x4
    x = x.reshape(x.shape[0], -1)
    x = mh.nn.dropout(_DROPOUT.value, x, is_training)
    x = jax.nn.relu(mh.nn.Linear(128)(x))
    return mh.nn.Linear(10)(x)


def make_train_step(net: mh.TransformedWithState, tx: optax.GradientTransformation):
    """``step(train_state, rng, x, y) -> (train_state, loss)``, jitted."""

    def loss_fn(params, state, rng, x, y):
        logits, state = net.apply(params, state, rng, x, True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, state

    @jax.jit
    def step(ts: TrainState, rng, x, y):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            ts.params, ts.state, rng, x, y)
        updates, opt_state = tx.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        return TrainState(params, state, opt_state, ts.step + 1), loss

    return step


def make_predict(net: mh.TransformedWithState):
    """``predict(params, state, x) -> class per image`` (eval mode, jitted)."""

    @jax.jit
    def predict(params, state, x):
        logits, _ = net.apply(params, state, None, x, False)
        return jnp.argmax(logits, axis=-1)

    return predict


def train(data: Data, steps: int, seed: int, checkpoint_path=None) -> tuple:
    """Trains (resuming from ``checkpoint_path`` if it exists); returns ``(train_state, net)``."""
    net = mh.transform_with_state(convnet)
    tx = optax.adam(_LEARNING_RATE.value)
    sample = jnp.asarray(data.train_x[:_BATCH_SIZE.value])
    params, state = net.init(seed, sample, True)
    ts = TrainState(params, state, tx.init(params), jnp.zeros((), jnp.int32))
    if checkpoint_path and os.path.exists(checkpoint_path):
        ts = TrainState(**mh.io.load(checkpoint_path, like=ts._asdict()))
        logging.info("resumed from %s at step %d", checkpoint_path, int(ts.step))
    step = make_train_step(net, tx)
    n = len(data.train_y)
    rng = np.random.default_rng(seed)
    keys = mh.PRNGSequence(seed + 1)
    # Skip the batches (and keys) a resumed run already used, so resuming
    # continues the very same run.
    for _ in range(int(ts.step)):
        rng.integers(0, n, _BATCH_SIZE.value)
        next(keys)
    while int(ts.step) < steps:
        idx = rng.integers(0, n, _BATCH_SIZE.value)
        ts, loss = step(ts, next(keys), data.train_x[idx], data.train_y[idx])
        i = int(ts.step)
        if i % _LOG_EVERY.value == 0 or i == steps:
            logging.info("step %d loss %.4f", i, float(loss))
    if checkpoint_path:
        mh.io.save(checkpoint_path, ts._asdict())
        logging.info("saved train state to %s", checkpoint_path)
    return ts, net


def plot(path: str, data: Data, predictions: np.ndarray) -> None:
    """Writes the confusion matrix and up to 24 misclassified test digits."""
    import matplotlib  # Only needed for --plot_path.
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (data.test_y, predictions), 1)
    wrong = np.flatnonzero(predictions != data.test_y)[:24]
    fig = plt.figure(figsize=(12, 5.5))
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > confusion.max() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float(np.mean(predictions == data.test_y))
    ax.set_title(f"test confusion matrix (accuracy {accuracy:.2%})")
    for k, i in enumerate(wrong):
        sub = fig.add_subplot(4, 12, 12 * (k // 6) + 7 + k % 6)
        sub.imshow(data.test_x[i, :, :, 0], cmap="gray_r")
        sub.set_title(f"{data.test_y[i]}→{predictions[i]}", fontsize=9)
        sub.axis("off")
    fig.suptitle(f"misclassified: {len(np.flatnonzero(predictions != data.test_y))} "
                 "(true→predicted)", x=0.75)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logging.info("wrote plot to %s", path)


def main(argv):
    del argv  # Unused.
    cli.quiet_logs()
    start = time.perf_counter()
    data = load_data()
    logging.info("digits: %d train, %d test images", len(data.train_y), len(data.test_y))
    ts, net = train(data, _STEPS.value, _SEED.value, _CHECKPOINT_PATH.value)
    predictions = np.asarray(make_predict(net)(ts.params, ts.state, data.test_x))
    accuracy = float(np.mean(predictions == data.test_y))
    logging.info("test accuracy %.4f (%d/%d) after %d steps (%.1f s)", accuracy,
                 int(np.sum(predictions == data.test_y)), len(data.test_y), int(ts.step),
                 time.perf_counter() - start)
    if _PLOT_PATH.value:
        plot(_PLOT_PATH.value, data, predictions)


if __name__ == "__main__":
    app.run(main)
