"""Smoke tests of the real-model examples: digits_cnn.py, transformer_lm.py, llama_finetune.py.

Each runs as a user runs it, in a subprocess, with few steps; resuming from a
checkpoint must continue the very run that was interrupted.
"""

import re

import pytest
from absl.testing import absltest

from test_examples import _is_png, _run, _tempdir


def _logged(log: str, pattern: str) -> list:
    return [float(x) for x in re.findall(pattern, log)]


class DigitsCNNTest(absltest.TestCase):

    def test_learns_the_digits_and_plots(self):
        tmp = _tempdir(self)
        whole = _run(self, ["examples/digits_cnn.py", "--steps=200", "--log_every=100",
                            f"--plot_path={tmp / 'digits.png'}"])
        accuracy = _logged(whole, r"test accuracy ([0-9.]+)")[0]
        self.assertGreaterEqual(accuracy, 0.95)
        self.assertTrue(_is_png(tmp / "digits.png"))

    @pytest.mark.slow  # Three runs; resuming mh.io train states is also tested in test_io*.py.
    def test_resumes_the_same_run(self):
        tmp = _tempdir(self)
        whole = _run(self, ["examples/digits_cnn.py", "--steps=200", "--log_every=100"])
        accuracy = _logged(whole, r"test accuracy ([0-9.]+)")[0]
        ckpt = f"--checkpoint_path={tmp / 'ckpt.npz'}"
        _run(self, ["examples/digits_cnn.py", "--steps=100", "--log_every=100", ckpt])
        resumed = _run(self, ["examples/digits_cnn.py", "--steps=200", "--log_every=100", ckpt])
        self.assertIn("resumed from", resumed)
        loss = r"step 200 loss ([0-9.]+)"
        self.assertEqual(_logged(resumed, loss), _logged(whole, loss))
        self.assertEqual(_logged(resumed, r"test accuracy ([0-9.]+)"), [accuracy])


_TINY = ["examples/transformer_lm.py", "--d_model=32", "--num_layers=2", "--num_heads=2",
         "--seq_len=32", "--batch_size=8", "--log_every=10", "--eval_batches=1",
         "--learning_rate=1e-2", "--warmup_steps=5"]
_BITS = r"step (\d+) train ([0-9.]+) bits/char valid ([0-9.]+) bits/char \(unigram ([0-9.]+)\)"


class TransformerLMTest(absltest.TestCase):

    def test_learns_and_samples(self):
        tmp = _tempdir(self)
        # 60 characters past a 4-character prompt with --seq_len=32: the context slides twice.
        whole = _run(self, _TINY + ["--steps=40", "--sample=60", "--prompt=The ",
                                    f"--plot_path={tmp / 'lm.png'}"])
        curve = re.findall(_BITS, whole)
        self.assertLen(curve, 4)
        first_valid, last_valid = float(curve[0][2]), float(curve[-1][2])
        self.assertLess(last_valid, first_valid)
        self.assertLess(last_valid, float(curve[-1][3]))   # below the unigram entropy
        self.assertTrue(_is_png(tmp / "lm.png"))
        sample = re.search(r"sample:\n(.*)\n\S+ wrote plot to", whole, re.DOTALL).group(1)
        self.assertTrue(sample.startswith("The "), sample[:80])
        self.assertLen(sample, 4 + 60)
        self.assertNotIn("Unable to initialize backend", whole)

    @pytest.mark.slow  # Three runs; resuming mh.io train states is also tested in test_io*.py.
    def test_resumes_the_same_curve(self):
        tmp = _tempdir(self)
        curve = re.findall(_BITS, _run(self, _TINY + ["--steps=40"]))
        ckpt = f"--checkpoint_path={tmp / 'ckpt.npz'}"
        _run(self, _TINY + ["--steps=40", "--stop_after=20", ckpt])
        resumed = _run(self, _TINY + ["--steps=40", ckpt])
        self.assertIn("resumed from", resumed)
        self.assertEqual(re.findall(_BITS, resumed), curve[2:])

    @pytest.mark.slow  # ~20 s; the 8-device sharded step is covered by test_sharding.py.
    def test_mesh_over_eight_devices_in_bfloat16_with_remat(self):
        log = _run(self, _TINY + ["--steps=10", "--mesh=data:4,model:2", "--precision=bfloat16",
                                  "--remat", "--num_kv_heads=1"], devices=8)
        curve = re.findall(_BITS, log)
        self.assertLen(curve, 1)
        self.assertLess(float(curve[0][1]), 8.0)


_LLAMA = ["examples/llama_finetune.py", "--hidden_size=32", "--num_layers=2", "--num_heads=2",
          "--num_kv_heads=1", "--seq_len=32", "--batch_size=4", "--eval_batches=1",
          "--log_every=2", "--steps=6", "--sample=8"]
_TRAIN = r"step (\d+) train loss ([0-9.]+) nats/byte ([0-9]+) tokens/s"
_VALID = r"step (\d+) validation loss ([0-9.]+) nats/byte"


class LlamaFinetuneTest(absltest.TestCase):

    def test_fine_tunes_samples_exports_and_resumes_the_same_run(self):
        tmp = _tempdir(self)
        whole = _run(self, _LLAMA + [f"--export_dir={tmp / 'merged'}"])
        valid = [float(v) for _, v in re.findall(_VALID, whole)]
        self.assertLen(valid, 2)
        self.assertLess(valid[1], valid[0])
        train = re.findall(_TRAIN, whole)
        self.assertEqual([int(s) for s, _, _ in train], [2, 4, 6])
        self.assertGreater(min(int(r) for _, _, r in train), 0)
        self.assertRegex(whole, r"sample: 'The ")
        self.assertRegex(whole, r"sampled 8 bytes at [0-9]+ tokens/s")
        # The merged export is a plain checkpoint: fine-tuning from it starts
        # where the first run ended (its validation loss, adapters at zero).
        again = _run(self, _LLAMA + ["--steps=0", "--sample=0",
                                     f"--hf_checkpoint={tmp / 'merged'}"])
        start = float(re.findall(_VALID, again)[0][1])
        self.assertAlmostEqual(start, valid[1], delta=1e-3)
        ckpt = f"--checkpoint_path={tmp / 'lora.npz'}"
        _run(self, _LLAMA + ["--stop_after=4", "--sample=0", ckpt])
        resumed = _run(self, _LLAMA + ["--sample=0", ckpt])
        self.assertIn("resumed from", resumed)
        self.assertEqual(re.findall(_TRAIN, resumed)[-1][:2], train[-1][:2])

    @pytest.mark.slow  # ~20 s: the base loaded sharded over 8 host devices.
    def test_mesh_over_eight_devices(self):
        log = _run(self, _LLAMA + ["--mesh=data:2,model:4"], devices=8)
        valid = [float(v) for _, v in re.findall(_VALID, log)]
        self.assertLess(valid[1], valid[0])


if __name__ == "__main__":
    absltest.main()
