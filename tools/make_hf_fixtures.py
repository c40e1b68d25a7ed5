"""Builds the tiny Hugging Face checkpoints that tests/test_interop_hf.py loads.

Run once (needs the ``fixtures`` extra: ``pip install -e '.[fixtures]'``)::

  python tools/make_hf_fixtures.py [--out=tests/testdata/hf]

For each model it builds a random-weight PyTorch ``transformers`` model,
saves it with ``save_pretrained`` (safetensors), and records, for a fixed
batch of prompts, the logits of the whole generated sequence and the greedy
continuation (``generate``, with and without the KV cache, which must agree)
in ``expected.npz``. Tests never import torch or transformers: they compare
against these files. Weights are drawn wider than transformers' init
(stddev 0.02) so that the logits are far apart and the greedy tokens are
not decided by rounding.
"""

import json
import os
import shutil

import numpy as np
import torch
import transformers
from absl import app, flags

_OUT = flags.DEFINE_string("out", os.path.join("tests", "testdata", "hf"),
                           "where to write one directory per model")

PROMPT_LEN, NEW_TOKENS, BATCH = 8, 8, 2

# name -> (config class, model class, config kwargs, save_pretrained kwargs)
MODELS = {
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel,
             dict(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64),
             {}),
    "llama_gqa": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                  dict(vocab_size=128, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       rope_theta=10000.0, max_position_embeddings=64),
                  {}),
    # Qwen2-style: q/k/v biases, tied embeddings, a large rope theta; saved in
    # shards with an index, as big checkpoints are.
    "qwen2_tied_sharded": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
                           dict(vocab_size=128, hidden_size=32, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=1, rope_theta=1e6,
                                tie_word_embeddings=True, max_position_embeddings=64),
                           dict(max_shard_size="20KB")),
    # Mistral-style: a sliding window shorter than the generated sequence.
    "mistral_window": (transformers.MistralConfig, transformers.MistralForCausalLM,
                       dict(vocab_size=128, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, sliding_window=6,
                            max_position_embeddings=64),
                       {}),
}


def _widen(model: torch.nn.Module, seed: int) -> None:
    """Redraws every weight: matrices ~N(0, 4/fan_in), tables ~N(0, 0.09), norms ~1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name or ".ln_" in name:
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "wte" in name or "wpe" in name or "embed_tokens" in name:
                p.copy_(0.3 * noise)
            else:
                # PyTorch Linear weights are [out, in]; GPT-2's Conv1D are [in, out].
                # Gain 2: the blocks, not the token's own (tied) embedding, decide.
                fan_in = p.shape[0] if "transformer.h." in name else p.shape[-1]
                p.copy_(2.0 * noise / fan_in ** 0.5)


def make(name: str, out: str, seed: int) -> None:
    config_cls, model_cls, kwargs, save_kwargs = MODELS[name]
    config = config_cls(**kwargs, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.config._attn_implementation = "eager"
    _widen(model, seed)
    directory = os.path.join(out, name)
    shutil.rmtree(directory, ignore_errors=True)
    model.save_pretrained(directory, safe_serialization=True, **save_kwargs)
    rng = np.random.default_rng(seed)
    prompts = torch.tensor(rng.integers(0, config.vocab_size, (BATCH, PROMPT_LEN)))
    greedy = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                  pad_token_id=0)
    with torch.no_grad():
        cached = model.generate(prompts, use_cache=True, **greedy)
        uncached = model.generate(prompts, use_cache=False, **greedy)
        assert torch.equal(cached, uncached), (name, cached, uncached)
        logits = model(cached).logits
    np.savez(os.path.join(directory, "expected.npz"), prompts=prompts.numpy(),
             tokens=cached.numpy(), logits=logits.float().numpy())
    with open(os.path.join(directory, "made_with.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                   "seed": seed}, f, indent=2)
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    print(f"{name}: {size / 1024:.0f} KiB, tokens {cached[:, PROMPT_LEN:].tolist()}")


def main(argv):
    del argv
    for seed, name in enumerate(MODELS):
        make(name, _OUT.value, seed)


if __name__ == "__main__":
    app.run(main)
