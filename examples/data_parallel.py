r"""The quadratic MLP trained data-parallel: the batch is sharded over all devices.

Uses JAX's own sharding: a 1-D ``jax.sharding.Mesh`` over the devices, the
batch split along it with ``NamedSharding(mesh, P("batch"))`` and the params
(and optimizer state) replicated with ``NamedSharding(mesh, P())``. ``jax.jit``
then inserts the gradient all-reduce itself; minihaiku's ``init``/``apply`` are
plain pure functions and need nothing special. It takes every flag of
``quadratic_mlp.py``; try 8 CPU devices with

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py

Multi-host: start one process per host with ``--coordinator_address=host:port
--num_processes=N --process_id=i``; the mesh then spans every host's devices
and each process only materialises its own shards of the batch.
"""

import time

import jax
import numpy as np
from absl import app, flags, logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import cli
import minihaiku as mh
import quadratic_mlp  # Also defines the training flags (--steps, --seed, ...).

_NUM_DEVICES = flags.DEFINE_integer("num_devices", 0, "Devices to use; 0 means all.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-host training.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes (multi-host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")

FLAGS = flags.FLAGS


def train(devices, steps: int, learning_rate: float = 0.003, seed: int = 0,
          optimizer: str = "sgd", init: str = "tutorial", log_every: int = 500) -> tuple:
    """Trains the quadratic MLP with the batch sharded over ``devices``.

    Returns:
      ``(params, losses)``: the trained params as host numpy arrays, and the
      ``(step, loss)`` pairs logged (the last one is the final loss).
    """
    mesh = Mesh(np.asarray(devices), ("batch",))
    batch_sharded = NamedSharding(mesh, P("batch"))
    replicated = NamedSharding(mesh, P())
    xs, ys = quadratic_mlp.make_data()
    if len(xs) % len(devices):
        raise app.UsageError(f"the batch of {len(xs)} does not split over {len(devices)} devices")
    # Each process builds only the shards its own devices hold.
    xs, ys = (jax.make_array_from_callback(a.shape, batch_sharded, lambda i, a=a: a[i])
              for a in (xs, ys))
    net = quadratic_mlp.make_network(init)
    opt = quadratic_mlp.make_optimizer(optimizer, learning_rate)
    params = jax.jit(net.init, out_shardings=replicated)(jax.random.PRNGKey(seed), xs)
    opt_state = jax.jit(opt.init, out_shardings=replicated)(params)
    step = jax.jit(quadratic_mlp.make_step(net, opt),
                   in_shardings=(replicated, replicated, batch_sharded, batch_sharded),
                   out_shardings=(replicated, replicated, replicated))
    # Waiting for each step before dispatching the next: with several
    # multi-device executions in flight, the CPU runtime of jax 0.10 can
    # deadlock in the all-reduce (observed with 2 cores and 2 to 8 devices).
    # The wait costs little: the next step needs this one's params anyway.
    params, losses = quadratic_mlp.fit(lambda *a: jax.block_until_ready(step(*a)),
                                       params, opt_state, xs, ys, steps, log_every)
    # Replicated: any local copy is the whole value.
    return jax.tree_util.tree_map(lambda a: np.asarray(a.addressable_data(0)), params), losses


def main(argv):
    del argv  # Unused.
    cli.quiet_logs()
    if _COORDINATOR.value:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    start = time.perf_counter()
    devices = jax.devices()
    if _NUM_DEVICES.value:
        devices = devices[:_NUM_DEVICES.value]
    logging.info("training on %d %s devices in %d process(es)",
                 len(devices), devices[0].platform, jax.process_count())
    if FLAGS.summary:
        logging.info("params:\n%s", mh.summary(quadratic_mlp.make_network(FLAGS.init),
                                               quadratic_mlp.make_data()[0]))
    params, losses = train(devices, FLAGS.steps, FLAGS.learning_rate, FLAGS.seed,
                           FLAGS.optimizer, FLAGS.init, FLAGS.log_every)
    elapsed = time.perf_counter() - start
    logging.info("final loss %.6f after %d steps on %d device(s) (%.1f s)",
                 losses[-1][1], FLAGS.steps, len(devices), elapsed)
    if jax.process_index() != 0:
        return
    if FLAGS.checkpoint_path:
        mh.io.save(FLAGS.checkpoint_path, params)
        logging.info("saved params to %s", FLAGS.checkpoint_path)
    if FLAGS.plot_path:
        xs, ys = quadratic_mlp.make_data()
        net = quadratic_mlp.make_network(FLAGS.init)
        quadratic_mlp.plot(FLAGS.plot_path, xs, ys, net.apply(params, xs),
                           f"{len(devices)}-device fit of x**2, final MSE {losses[-1][1]:.4f}")


if __name__ == "__main__":
    app.run(main)
