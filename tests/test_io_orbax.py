"""orbax-checkpoint saves and restores minihaiku params as they are (plain dicts)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

import minihaiku as mh
from io_testing import run_python as _run_python
from io_testing import tempdir as _tempdir


@absltest.skipIf(sys.version_info < (3, 11), "orbax-checkpoint needs Python >= 3.11")
class OrbaxTest(absltest.TestCase):
    """Params are plain dicts of arrays, so orbax-checkpoint takes them as they are."""

    def test_params_and_train_state_round_trip(self):
        import orbax.checkpoint as ocp

        f = mh.transform(lambda x: mh.nn.Linear(3)(mh.nn.LayerNorm(-1, True, True)(x)))
        params = f.init(jax.random.PRNGKey(0), jnp.ones((2, 4)))
        state = {"params": params, "opt_state": optax.adamw(1e-3).init(params),
                 "step": jnp.asarray(5)}
        path = os.path.join(_tempdir(self), "orbax")
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(path, state)
            checkpointer.wait_until_finished()
            restored = checkpointer.restore(path, jax.eval_shape(lambda: state))
        self.assertEqual(set(restored["params"]), set(state["params"]))
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
            self.assertEqual(got.dtype, want.dtype)
            np.testing.assert_array_equal(got, want)
        x = jnp.arange(8.0).reshape(2, 4)
        np.testing.assert_array_equal(f.apply(restored["params"], None, x),
                                      f.apply(params, None, x))

    def test_sharded_params_over_two_devices(self):
        out = _run_python(f"""
            import os
            import jax, jax.numpy as jnp, numpy as np
            import orbax.checkpoint as ocp
            from jax.sharding import NamedSharding, PartitionSpec as P
            import minihaiku as mh
            assert jax.device_count() == 2, jax.devices()
            f = mh.transform(lambda x: mh.nn.Linear(4)(mh.nn.Linear(8)(x)))
            params = f.init(jax.random.PRNGKey(0), jnp.ones((2, 6)))
            mesh = jax.make_mesh((2,), ("model",))
            spec = lambda v: P(None, "model") if v.ndim == 2 else P("model")
            sharded = jax.device_put(
                params, {{k: NamedSharding(mesh, spec(v)) for k, v in params.items()}})
            path = os.path.join({_tempdir(self)!r}, "ckpt")
            with ocp.StandardCheckpointer() as checkpointer:
                checkpointer.save(path, sharded)
                checkpointer.wait_until_finished()
                like = jax.tree.map(
                    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                    sharded)
                restored = checkpointer.restore(path, like)
            for k, v in params.items():
                assert restored[k].sharding == sharded[k].sharding, k
                assert len(restored[k].addressable_shards) == 2, k
                np.testing.assert_array_equal(restored[k], v)
            # mh.io gathers fully addressable sharded arrays into one file.
            mh.io.save(path + ".npz", sharded)
            loaded = mh.io.load(path + ".npz", like=params)
            assert all(np.array_equal(loaded[k], params[k]) for k in params)
            print("ok", len(params))
            """, devices=2)
        self.assertEqual(out.split(), ["ok", "4"])


if __name__ == "__main__":
    absltest.main()
