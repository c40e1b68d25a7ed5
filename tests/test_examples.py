"""Smoke tests of the example programs in examples/.

Each example runs as a user runs it, ``python examples/<name>.py --flags``, in
a subprocess (the examples define overlapping absl flags, and the 8-device
test must set XLA_FLAGS before JAX starts), with few steps.
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest

import minihaiku as mh
from helpers.subprocess_env import subprocess_env

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_EXAMPLES = _ROOT / "examples"


def _env(devices: int = 0) -> dict:
    return subprocess_env(devices, _EXAMPLES)   # this checkout's minihaiku, whatever is installed


def _run(test, args, devices: int = 0) -> str:
    proc = subprocess.run([sys.executable, *args], env=_env(devices), capture_output=True,
                          text=True, timeout=300, cwd=_ROOT)
    test.assertEqual(proc.returncode, 0, proc.stderr[-5000:])
    return proc.stderr + proc.stdout  # absl logs to stderr.


def _losses(log: str) -> list:
    return [float(x) for x in re.findall(r"step \d+ loss ([0-9.e+-]+)", log)]


def _final(log: str) -> float:
    return float(re.search(r"final loss ([0-9.e+-]+)", log).group(1))


def _tempdir(test) -> pathlib.Path:
    tmp = tempfile.TemporaryDirectory()
    test.addCleanup(tmp.cleanup)
    return pathlib.Path(tmp.name)


def _is_png(path: pathlib.Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _tutorial_mlp(params, x):
    """The tutorial's network written out by hand: sigmoid between the layers."""
    def layer(i, h):
        p = f"~/MLP_0/__call__/Linear_{i}/__call__/"
        return h @ params[p + "w"] + params[p + "b"]
    return layer(2, jax.nn.sigmoid(layer(1, jax.nn.sigmoid(layer(0, x)))))


class QuadraticMLPTest(absltest.TestCase):

    def test_trains_logs_plots_and_checkpoints(self):
        tmp = _tempdir(self)
        log = _run(self, ["examples/quadratic_mlp.py", "--steps=300", "--log_every=100",
                          f"--plot_path={tmp / 'fit.png'}", f"--checkpoint_path={tmp / 'p.npz'}",
                          "--summary"])
        losses = _losses(log)
        self.assertLen(losses, 3)
        final = _final(log)
        self.assertLess(final, 0.1 * losses[0])
        self.assertIn("Total params: 16,897 (66.0 KiB) in 6 arrays", log)
        self.assertTrue(_is_png(tmp / "fit.png"))
        # The checkpoint holds the tutorial's params; the hand-written network
        # with them reproduces the logged final loss.
        params = mh.io.load(tmp / "p.npz")
        self.assertEqual(params["~/MLP_0/__call__/Linear_1/__call__/w"].shape, (128, 128))
        xs = np.linspace(-2.0, 2.0, 128, dtype=np.float32)[:, None]
        mse = float(jnp.mean((_tutorial_mlp(params, xs) - xs ** 2) ** 2))
        np.testing.assert_allclose(mse, final, rtol=1e-3)

    @pytest.mark.slow  # Another optimizer and init; the default run trains with SGD above.
    def test_adam_with_linear_default_init(self):
        log = _run(self, ["examples/quadratic_mlp.py", "--steps=200", "--log_every=100",
                          "--optimizer=adam", "--init=default"])
        self.assertLess(_final(log), 0.5 * _losses(log)[0])


class DataParallelTest(absltest.TestCase):

    def test_eight_devices_give_the_params_of_one(self):
        code = textwrap.dedent("""
            import json, jax, numpy as np
            from absl import flags
            flags.FLAGS(["test"])
            import data_parallel, quadratic_mlp
            p8, l8 = data_parallel.train(jax.devices(), 300, log_every=0)
            p1, l1 = data_parallel.train(jax.devices()[:1], 300, log_every=0)
            # The plain single-device loop of quadratic_mlp, no sharding at all.
            xs, ys = quadratic_mlp.make_data()
            net = quadratic_mlp.make_network("tutorial")
            opt = quadratic_mlp.make_optimizer("sgd", 0.003)
            p = net.init(jax.random.PRNGKey(0), xs)
            p, l = quadratic_mlp.fit(jax.jit(quadratic_mlp.make_step(net, opt)), p, (), xs, ys,
                                     300, 0)
            diff = lambda a, b: max(float(np.max(np.abs(a[k] - np.asarray(b[k])))) for k in a)
            print(json.dumps({"devices": len(jax.devices()), "diff_8_1": diff(p8, p1),
                              "diff_1_plain": diff(p1, p), "losses": [l8[-1][1], l1[-1][1]],
                              "sharded": [k for k, v in p8.items() if v.shape != p[k].shape]}))
        """)
        out = _run(self, ["-c", code], devices=8)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["devices"], 8)
        self.assertLess(result["diff_8_1"], 1e-5)
        self.assertLess(result["diff_1_plain"], 1e-5)
        self.assertEqual(result["sharded"], [])
        np.testing.assert_allclose(*result["losses"], rtol=1e-4)

    @pytest.mark.slow  # The 8-device training itself is checked by the test above.
    def test_main_on_eight_devices(self):
        tmp = _tempdir(self)
        log = _run(self, ["examples/data_parallel.py", "--steps=200", "--log_every=100",
                          f"--checkpoint_path={tmp / 'p.npz'}"], devices=8)
        self.assertIn("training on 8 cpu devices in 1 process(es)", log)
        self.assertLess(_final(log), 0.1 * _losses(log)[0])
        self.assertLen(mh.io.load(tmp / "p.npz"), 6)


class ScannedRNNTest(absltest.TestCase):

    def test_trains_plots_and_checkpoints(self):
        tmp = _tempdir(self)
        log = _run(self, ["examples/scanned_rnn.py", "--steps=60", "--log_every=20",
                          f"--plot_path={tmp / 'rnn.png'}", f"--checkpoint_path={tmp / 'p.npz'}",
                          "--summary"])
        first, final = _losses(log)[0], _final(log)
        self.assertLess(final, 0.5 * first)
        self.assertIn(f"first loss {first:.6f}", log)
        self.assertTrue(_is_png(tmp / "rnn.png"))
        params = mh.io.load(tmp / "p.npz")
        # One set of LSTM params shared by all 40 steps of the scan.
        self.assertEqual(params["~/LSTM_0/__call__/Linear_0/__call__/w"].shape, (33, 128))
        self.assertLen(params, 4)

    @pytest.mark.slow  # remat inside scan is checked in tests/lifted; this runs the flag.
    def test_remat(self):
        log = _run(self, ["examples/scanned_rnn.py", "--steps=60", "--log_every=20", "--remat"])
        self.assertLess(_final(log), 0.5 * _losses(log)[0])


if __name__ == "__main__":
    absltest.main()
