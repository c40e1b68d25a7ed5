"""One process of a sharded training run; test_sharding.py launches it.

``python sharding_multihost.py OUT.npz`` trains on the local devices (the
test gives 8); ``python sharding_multihost.py OUT.npz PROCESS_ID PORT`` is one
of 2 processes joined by ``jax.distributed.initialize`` on 127.0.0.1 (the test
gives each 4 devices), collectives over gloo. Either way: the tensor-parallel
rules on a ``data:2,model:4`` mesh of the 8 global devices, 20 SGD steps, and
the final params written to OUT.npz (fully gathered).
"""

import os
import sys

import jax

if len(sys.argv) == 4:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[3]}",
                               num_processes=2, process_id=int(sys.argv[2]),
                               initialization_timeout=120)

import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import minihaiku as mh  # noqa: E402
import sharding_model as m  # noqa: E402


def main(out_path):
    assert jax.device_count() == 8, jax.devices()
    mesh = mh.sharding.mesh("data:2,model:4")
    model = m.make_model()
    data = m.batches(20)
    params = mh.sharding.init(model.init, m.TP_RULES, mesh)(0, data[0][:, :-1])
    batch_sharding = NamedSharding(mesh, P("data"))
    shardings = {k: v.sharding for k, v in params.items()}
    step = m.make_train_step(model.apply, shardings, batch_sharding)
    for tokens in data:
        # Each process builds only the rows its devices hold.
        batch = jax.make_array_from_callback(tokens.shape, batch_sharding,
                                             lambda index, t=tokens: t[index])
        params = step(params, batch)
    gathered = jax.jit(lambda p: p, out_shardings=NamedSharding(mesh, P()))(params)
    arrays = {k: np.asarray(v.addressable_data(0)) for k, v in gathered.items()}
    tmp = f"{out_path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, out_path)
    print(f"process {jax.process_index()} of {jax.process_count()}: "
          f"{len(jax.local_devices())} local devices, wrote {len(arrays)} params")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    finally:
        if len(sys.argv) == 4:
            jax.distributed.shutdown()
