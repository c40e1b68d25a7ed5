"""Tests for mh.interop.load_hf / save_hf.

Parity: ``tests/testdata/hf/<name>/`` are tiny random-weight checkpoints that
PyTorch ``transformers`` saved (``tools/make_hf_fixtures.py``), each with the
logits transformers computed for a fixed generated sequence and its greedy
tokens (``expected.npz``). The loaded nets must reproduce both: logits to
1e-4 (fp32), every greedy token, with and without the KV cache, unrolled and
with ``scan_layers``. What needs 8 devices runs in ``hf_sharding_devices.py``
in a subprocess.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from absl.testing import absltest, parameterized
from safetensors.numpy import load_file, save_file

import minihaiku as mh
from helpers.subprocess_env import subprocess_env
from minihaiku import interop, nets
from test_nets_decoders import random_params

_TESTS = pathlib.Path(__file__).resolve().parent
_ROOT = _TESTS.parent
_DATA = _TESTS / "testdata" / "hf"
_MODELS = ["gpt2", "llama_gqa", "qwen2_tied_sharded", "mistral_window"]
_PROMPT = 8


def _expected(name):
    return dict(np.load(_DATA / name / "expected.npz"))


def _net(config):
    return nets.GPT2 if isinstance(config, nets.GPT2Config) else nets.Llama


def _forward(config):
    net = _net(config)
    return jax.jit(mh.transform(lambda t: net(config)(t)).apply)


def greedy(config, params, prompts, steps, cache):
    """Greedy continuation of ``prompts``: the loop a user writes."""
    net = _net(config)
    if not cache:
        # The whole sequence each step; padded to its final length so one
        # compilation serves every step (causal: the padding is never seen).
        forward = _forward(config)
        t = prompts.shape[1]
        tokens = jnp.pad(jnp.asarray(prompts), ((0, 0), (0, steps)))
        for i in range(t, t + steps):
            nxt = jnp.argmax(forward(params, None, tokens)[:, i - 1], axis=-1)
            tokens = tokens.at[:, i].set(nxt)
        return np.asarray(tokens[:, t:])
    f = mh.transform_with_state(lambda t: net(config)(t, decode=True))
    state = nets.init_cache(f, prompts)
    step = jax.jit(f.apply)
    logits, state = step(params, state, None, prompts)
    out = []
    for _ in range(steps):
        nxt = jnp.argmax(logits[:, -1], axis=-1)
        out.append(nxt)
        logits, state = step(params, state, None, nxt[:, None])
    return np.asarray(jnp.stack(out, axis=1))


def check_greedy(name, scan_layers, cache):
    """Greedy tokens of the loaded fixture equal transformers' (a numpy assertion)."""
    expected = _expected(name)
    config, params = interop.load_hf(_DATA / name, scan_layers=scan_layers,
                                     cache_size=32 if cache else None)
    new = expected["tokens"][:, _PROMPT:]
    tokens = greedy(config, params, expected["prompts"], new.shape[1], cache)
    np.testing.assert_array_equal(tokens, new, err_msg=f"{name} {scan_layers} {cache}")


class ParityWithTransformersTest(parameterized.TestCase):

    @parameterized.product(name=_MODELS, scan_layers=[False, True])
    def test_logits_match_pytorch(self, name, scan_layers):
        expected = _expected(name)
        config, params = interop.load_hf(_DATA / name, scan_layers=scan_layers)
        self.assertEqual(config.scan_layers, scan_layers)
        logits = _forward(config)(params, None, expected["tokens"])
        np.testing.assert_allclose(logits, expected["logits"], atol=1e-4, rtol=0)

    # Every model with and without the cache, scanned and unrolled alternating;
    # the rest of the product is in the slow test below.
    @parameterized.parameters(*[(name, i % 2 == 0, True) for i, name in enumerate(_MODELS)],
                              *[(name, i % 2 == 1, False) for i, name in enumerate(_MODELS)])
    def test_greedy_tokens_match_pytorch(self, name, scan_layers, cache):
        check_greedy(name, scan_layers, cache)

    def test_the_fixtures_are_small(self):
        total = sum(p.stat().st_size for p in _DATA.rglob("*") if p.is_file())
        self.assertLess(total, 2 * 2**20)

    def test_configs_read_from_the_checkpoints(self):
        config, _ = interop.load_hf(_DATA / "qwen2_tied_sharded")
        self.assertEqual((config.model_type, config.kv_heads, config.rope_theta,
                          config.tie_word_embeddings, config.attention_bias,
                          config.attention_out_bias), ("qwen2", 1, 1e6, True, True, False))
        config, _ = interop.load_hf(_DATA / "mistral_window")
        self.assertEqual(config.sliding_window, 6)
        config, params = interop.load_hf(_DATA / "gpt2", dtype=jnp.bfloat16)
        self.assertEqual(config.dtype, "bfloat16")
        self.assertEqual({v.dtype for v in params.values()}, {jnp.dtype(jnp.bfloat16)})


@pytest.mark.slow
class GreedyRestTest(parameterized.TestCase):
    """The other half of (model, scan_layers, cache) for greedy decoding."""

    @parameterized.parameters(*[(name, i % 2 == 1, True) for i, name in enumerate(_MODELS)],
                              *[(name, i % 2 == 0, False) for i, name in enumerate(_MODELS)])
    def test_greedy_tokens_match_pytorch(self, name, scan_layers, cache):
        check_greedy(name, scan_layers, cache)


class RoundTripTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = pathlib.Path(tmp.name)

    @parameterized.product(name=_MODELS, scan_layers=[False, True])
    def test_save_then_load_is_bit_exact(self, name, scan_layers):
        config, params = interop.load_hf(_DATA / name, scan_layers=scan_layers)
        interop.save_hf(self.tmp / "out", config, params)
        config2, params2 = interop.load_hf(self.tmp / "out", scan_layers=scan_layers)
        self.assertEqual(config2, config)
        self.assertEqual(list(params2), list(params))
        for path in params:
            np.testing.assert_array_equal(params2[path], params[path], err_msg=path)

    @parameterized.parameters(_MODELS)
    def test_saved_tensors_equal_the_original_files_bit_for_bit(self, name):
        config, params = interop.load_hf(_DATA / name)
        interop.save_hf(self.tmp / "out", config, params)
        original = _all_tensors(_DATA / name)
        saved = load_file(self.tmp / "out" / "model.safetensors")
        gpt2 = name == "gpt2"
        original = {k if not gpt2 or k.startswith("transformer.") else "transformer." + k: v
                    for k, v in original.items()}
        self.assertEqual(sorted(saved), sorted(original))
        for key, value in original.items():
            self.assertEqual(saved[key].dtype, value.dtype)
            np.testing.assert_array_equal(saved[key], value, err_msg=key)
        hf = json.loads((self.tmp / "out" / "config.json").read_text())
        theirs = json.loads((_DATA / name / "config.json").read_text())
        self.assertEqual(hf["model_type"], theirs["model_type"])
        self.assertEqual(hf["architectures"], theirs["architectures"])

    def test_bfloat16_round_trip_keeps_the_bits(self):
        config, params = interop.load_hf(_DATA / "llama_gqa", dtype="bfloat16")
        interop.save_hf(self.tmp / "bf16", config, params)
        saved = load_file(self.tmp / "bf16" / "model.safetensors")
        self.assertEqual(saved["model.norm.weight"].dtype, ml_dtypes.bfloat16)
        config2, params2 = interop.load_hf(self.tmp / "bf16")
        self.assertEqual(config2.dtype, "bfloat16")
        for path in params:
            self.assertEqual(params2[path].dtype, jnp.bfloat16)
            np.testing.assert_array_equal(np.asarray(params2[path]).view(np.uint16),
                                          np.asarray(params[path]).view(np.uint16))

    def test_sharded_save_writes_an_index_and_loads_back(self):
        config, params = interop.load_hf(_DATA / "llama_gqa")
        out = self.tmp / "sharded"
        interop.save_hf(out, config, params)  # A single file first: the shards replace it.
        interop.save_hf(out, config, params, max_shard_bytes=16 * 1024)
        index = json.loads((out / "model.safetensors.index.json").read_text())
        files = sorted(set(index["weight_map"].values()))
        self.assertGreater(len(files), 1)
        self.assertEqual(sorted(p.name for p in out.glob("*.safetensors")), files)
        self.assertFalse((out / "model.safetensors").exists())
        _, params2 = interop.load_hf(out)
        for path in params:
            np.testing.assert_array_equal(params2[path], params[path])

    def test_save_into_a_new_directory_leaves_no_temporary_files(self):
        config, params = interop.load_hf(_DATA / "gpt2")
        interop.save_hf(self.tmp / "new", config, params)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["new"])
        self.assertEqual(sorted(os.listdir(self.tmp / "new")),
                         ["config.json", "model.safetensors"])

    def test_params_of_other_llama_options_save_and_load(self):
        config = nets.LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24,
                                  num_layers=2, num_heads=4, num_kv_heads=2, head_dim=6,
                                  attention_bias=True, attention_out_bias=True,
                                  mlp_bias=True)
        f = mh.transform(lambda t: nets.Llama(config)(t))
        tokens = jnp.arange(10).reshape(2, 5)
        params = random_params(f, tokens)
        interop.save_hf(self.tmp / "init", config, params)
        config2, params2 = interop.load_hf(self.tmp / "init")
        self.assertEqual(config2, config)
        apply = jax.jit(f.apply)
        np.testing.assert_array_equal(apply(params2, None, tokens), apply(params, None, tokens))


class ErrorsTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = pathlib.Path(tmp.name)

    def _copy(self, name):
        target = self.tmp / name
        shutil.copytree(_DATA / name, target)
        return target

    def _rewrite(self, directory, edit):
        tensors = load_file(directory / "model.safetensors")
        edit(tensors)
        save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})

    def test_missing_tensor_names_the_tensor(self):
        d = self._copy("llama_gqa")
        self._rewrite(d, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
        with self.assertRaisesRegex(mh.CheckpointError,
                                    r"missing tensors \['model.layers.1.mlp.up_proj.weight'\]"):
            interop.load_hf(d)

    def test_wrong_shape_names_the_file_tensor_and_shapes(self):
        d = self._copy("gpt2")
        self._rewrite(d, lambda t: t.update({"transformer.h.0.attn.c_attn.weight":
                                             np.zeros((32, 90), np.float32)}))
        with self.assertRaisesRegex(
                mh.CheckpointError, r"'transformer.h.0.attn.c_attn.weight' in "
                r"'model.safetensors' has shape \(32, 90\), the config needs \(32, 96\)"):
            interop.load_hf(d)

    def test_wrong_shape_in_a_stacked_layer(self):
        d = self._copy("llama_gqa")
        self._rewrite(d, lambda t: t.update({"model.layers.1.self_attn.k_proj.weight":
                                             np.zeros((8, 32), np.float32)}))
        with self.assertRaisesRegex(mh.CheckpointError, "model.layers.1.self_attn.k_proj"):
            interop.load_hf(d, scan_layers=True)

    def test_unexpected_tensor(self):
        d = self._copy("llama_gqa")
        self._rewrite(d, lambda t: t.update({"model.extra.weight": np.zeros(3, np.float32)}))
        with self.assertRaisesRegex(mh.CheckpointError, r"unexpected tensors.*model.extra"):
            interop.load_hf(d)

    def test_unknown_model_type(self):
        d = self._copy("gpt2")
        hf = json.loads((d / "config.json").read_text())
        hf["model_type"] = "bert"
        (d / "config.json").write_text(json.dumps(hf))
        with self.assertRaisesRegex(mh.CheckpointError,
                                    r"config.json' has model_type='bert'.*'gpt2', 'llama'"):
            interop.load_hf(d)

    def test_unsupported_option(self):
        d = self._copy("llama_gqa")
        hf = json.loads((d / "config.json").read_text())
        hf["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}
        (d / "config.json").write_text(json.dumps(hf))
        with self.assertRaisesRegex(mh.CheckpointError, "rope_type='yarn'"):
            interop.load_hf(d)

    def test_truncated_file_names_the_file_and_the_cut_tensors(self):
        d = self._copy("llama_gqa")
        data = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[:-100])
        with self.assertRaisesRegex(mh.CheckpointError,
                                    r"model.safetensors' is not a complete safetensors file"
                                    r".*truncated: tensors \['model.norm.weight'\]"):
            interop.load_hf(d)

    def test_truncated_shard(self):
        d = self._copy("qwen2_tied_sharded")
        shard = d / "model-00002-of-00005.safetensors"
        shard.write_bytes(shard.read_bytes()[:-8])
        with self.assertRaisesRegex(mh.CheckpointError, "model-00002-of-00005.safetensors"):
            interop.load_hf(d)

    def test_corrupt_header(self):
        d = self._copy("gpt2")
        data = bytearray((d / "model.safetensors").read_bytes())
        data[8:20] = b"#" * 12
        (d / "model.safetensors").write_bytes(bytes(data))
        with self.assertRaisesRegex(mh.CheckpointError, "not a complete safetensors file"):
            interop.load_hf(d)

    def test_missing_shard_and_missing_files(self):
        d = self._copy("qwen2_tied_sharded")
        (d / "model-00003-of-00005.safetensors").unlink()
        with self.assertRaisesRegex(mh.CheckpointNotFoundError, "model-00003-of-00005"):
            interop.load_hf(d)
        (d / "model.safetensors.index.json").unlink()
        with self.assertRaisesRegex(mh.CheckpointNotFoundError,
                                    "neither model.safetensors nor"):
            interop.load_hf(d)
        with self.assertRaisesRegex(mh.CheckpointNotFoundError, "is not a directory"):
            interop.load_hf(self.tmp / "nowhere")
        (d / "config.json").unlink()
        with self.assertRaisesRegex(mh.CheckpointNotFoundError, "config.json' does not exist"):
            interop.load_hf(d)

    def test_bad_config_json(self):
        d = self._copy("gpt2")
        (d / "config.json").write_text("{not json")
        with self.assertRaisesRegex(mh.CheckpointError, "config.json' is not valid JSON"):
            interop.load_hf(d)
        (d / "config.json").write_text('{"model_type": "gpt2", "n_embd": 32}')
        with self.assertRaisesRegex(mh.CheckpointError, "lacks the key 'vocab_size'"):
            interop.load_hf(d)

    def test_rules_need_a_mesh(self):
        with self.assertRaisesRegex(mh.InvalidArgumentError, "rules but no mesh"):
            interop.load_hf(_DATA / "gpt2", rules=[])

    def test_nothing_is_read_when_a_check_fails(self):
        d = self._copy("llama_gqa")
        self._rewrite(d, lambda t: t.pop("model.norm.weight"))
        with mock.patch.object(interop.hf.TensorFiles, "read") as read:
            with self.assertRaises(mh.CheckpointError):
                interop.load_hf(d)
        read.assert_not_called()

    def test_save_refuses_params_that_do_not_fit_and_writes_nothing(self):
        config, params = interop.load_hf(_DATA / "gpt2")
        bad = dict(params)
        bad.pop("~/GPT2_0/__call__/wpe")
        with self.assertRaisesRegex(mh.CheckpointError,
                                    r"missing params \['~/GPT2_0/__call__/wpe'\]"):
            interop.save_hf(self.tmp / "out", config, bad)
        stacked = dataclasses.replace(config, scan_layers=True)
        with self.assertRaisesRegex(mh.CheckpointError, "scan_layers too"):
            interop.save_hf(self.tmp / "out", stacked, params)
        self.assertEqual(os.listdir(self.tmp), [])

    def test_save_refuses_a_config_its_model_type_cannot_express(self):
        config = nets.LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8,
                                  num_layers=1, num_heads=2, attention_bias=True,
                                  model_type="mistral")
        params = random_params(mh.transform(lambda t: nets.Llama(config)(t)),
                               jnp.zeros((1, 2), int))
        with self.assertRaisesRegex(mh.CheckpointError,
                                    r"cannot be written as model_type 'mistral'"):
            interop.save_hf(self.tmp / "out", config, params)
        with self.assertRaisesRegex(mh.InvalidArgumentError, "net_config of type dict"):
            interop.save_hf(self.tmp / "out", {}, params)


class ShardedPlacementTest(absltest.TestCase):

    def test_on_8_host_devices(self):
        proc = subprocess.run([sys.executable, str(_TESTS / "hf_sharding_devices.py")],
                              env=subprocess_env(8, _TESTS), capture_output=True, text=True,
                              timeout=600, cwd=_ROOT)
        self.assertEqual(proc.returncode, 0, proc.stderr[-6000:])


def _all_tensors(directory):
    out = {}
    for file in sorted(pathlib.Path(directory).glob("*.safetensors")):
        out.update(load_file(file))
    return out


if __name__ == "__main__":
    absltest.main()
