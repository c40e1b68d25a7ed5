r"""LoRA fine-tuning of a Hugging Face Llama checkpoint on the Python docs.

  python examples/llama_finetune.py --hf_checkpoint=path/to/llama --sample=200

``--hf_checkpoint`` is a checkpoint directory (``config.json`` +
``*.safetensors``, e.g. downloaded with ``huggingface-cli download``) loaded
with ``mh.interop.load_hf``. Without it the example builds a small random
Llama and saves it in the same layout first (``mh.interop.save_hf``), so it
runs anywhere. The text is ``pydoc_data.topics`` (shipped with Python) as
UTF-8 bytes: a byte-level vocabulary of 256 ids (a checkpoint's own
tokenizer is not used; its vocabulary must have at least 256 ids).

The base weights stay frozen: ``mh.peft.lora`` adds rank-``--rank`` adapters
to the weights matching ``--lora_rules`` and only those are trained (optax
AdamW). ``--mesh=data:2,model:4`` shards the base over local devices while
loading it. Logged: the validation loss before and after, the training loss
and tokens/s. ``--checkpoint_path`` saves the adapters and optimizer state
with ``mh.io`` and resumes from it; ``--sample=N`` generates N bytes with the
KV cache; ``--export_dir`` writes the merged model (``mh.peft.merge``) as a
Hugging Face checkpoint.
"""

import os
import tempfile
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging

import minihaiku as mh

_HF_CHECKPOINT = flags.DEFINE_string("hf_checkpoint", None,
                                     "Hugging Face Llama checkpoint directory; default: a "
                                     "small random Llama saved in that layout first.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 128, "Random Llama: width.")
_LAYERS = flags.DEFINE_integer("num_layers", 4, "Random Llama: blocks.")
_HEADS = flags.DEFINE_integer("num_heads", 4, "Random Llama: query heads.")
_KV_HEADS = flags.DEFINE_integer("num_kv_heads", 2, "Random Llama: key/value heads.")
_INIT_STD = flags.DEFINE_float("init_std", 0.1, "Random Llama: stddev of its weights.")
_LORA_RULES = flags.DEFINE_list("lora_rules", ["q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"],
                                "Regexes of the weights that get adapters.")
_RANK = flags.DEFINE_integer("rank", 8, "LoRA rank.")
_ALPHA = flags.DEFINE_float("alpha", 16.0, "LoRA alpha (adapters scaled by alpha / rank).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Training context length in bytes.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Sequences per step.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "AdamW learning rate.")
_MESH = flags.DEFINE_string("mesh", None, "Device mesh, e.g. 'data:2,model:4'.")
_CHECKPOINT_PATH = flags.DEFINE_string(
    "checkpoint_path", None, "Resume from this mh.io file if it exists; save to it at the end.")
_STOP_AFTER = flags.DEFINE_integer("stop_after", 0, "Stop after this many steps (then resume).")
_SAMPLE = flags.DEFINE_integer("sample", 100, "Generate this many bytes with the KV cache.")
_PROMPT = flags.DEFINE_string("prompt", "The ", "Prompt for --sample.")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Write the merged model here (HF layout).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random Llama, adapters and batches.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 50, "Log every this many steps.")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", 4, "Validation batches per evaluation.")

_ADAPTERS = r"/lora_[ab]$"


class TrainState(NamedTuple):
    adapters: Any
    opt_state: Any
    step: Any


def load_bytes() -> tuple[np.ndarray, np.ndarray]:
    """The Python docs' topics as UTF-8 byte ids, split 90/10."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
    split = int(len(ids) * 0.9)
    return ids[:split], ids[split:]


def batch(data: np.ndarray, step: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step``: random windows, a pure function of the step."""
    rng = np.random.default_rng([seed, step])
    n = _SEQ_LEN.value
    starts = rng.integers(0, len(data) - n - 1, _BATCH_SIZE.value)
    windows = np.stack([data[s:s + n + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]


def random_checkpoint(directory: str) -> str:
    """Saves a small random byte-level Llama in Hugging Face layout."""
    config = mh.nets.LlamaConfig(vocab_size=256, hidden_size=_HIDDEN.value,
                                 intermediate_size=4 * _HIDDEN.value,
                                 num_layers=_LAYERS.value, num_heads=_HEADS.value,
                                 num_kv_heads=_KV_HEADS.value, max_position_embeddings=2048,
                                 init_std=_INIT_STD.value)
    net = mh.transform(lambda t: mh.nets.Llama(config)(t))
    params = jax.jit(net.init)(_SEED.value, jnp.zeros((1, 8), jnp.int32))
    mh.interop.save_hf(directory, config, params)
    logging.info("saved a random Llama (%d params) to %s", mh.data.size(params), directory)
    return directory


def sharding_rules() -> list:
    """Tensor parallel over ``model`` (heads, MLP width); the rest replicated."""
    from jax.sharding import PartitionSpec as P

    return [(r"(q|k|v|gate|up)_proj_0/__call__/w$", P(None, None, "model")),
            (r"(o|down)_proj_0/__call__/w$", P(None, "model", None))]


def main(argv):
    del argv  # Unused.
    start = time.perf_counter()
    train, valid = load_bytes()
    mesh = mh.sharding.mesh(_MESH.value) if _MESH.value else None
    with tempfile.TemporaryDirectory() as tmp:
        directory = _HF_CHECKPOINT.value or random_checkpoint(os.path.join(tmp, "random_llama"))
        config, base = mh.interop.load_hf(
            directory, mesh=mesh, rules=sharding_rules() if mesh is not None else None,
            scan_layers=True, cache_size=len(_PROMPT.value.encode()) + _SAMPLE.value + 1)
    if config.vocab_size < 256:
        raise app.UsageError(f"{directory}: vocab_size {config.vocab_size} < 256 byte ids.")
    logging.info("loaded %s: %d params, %d layers", directory, mh.data.size(base),
                 config.num_layers)

    def lm(tokens, decode=False):
        with mh.peft.lora(_LORA_RULES.value, rank=_RANK.value, alpha=_ALPHA.value):
            return mh.nets.Llama(config)(tokens, decode=decode)

    model = mh.without_apply_rng(mh.transform(lm))
    tokens0, _ = batch(train, 0, _SEED.value)
    # init also builds random base weights; keep only the adapters.
    adapters = mh.data.filter(_ADAPTERS, jax.jit(model.init)(_SEED.value + 1, tokens0))
    logging.info("adapters: %d params (%.2f%% of the base)", mh.data.size(adapters),
                 100 * mh.data.size(adapters) / mh.data.size(base))
    tx = optax.adamw(_LEARNING_RATE.value, weight_decay=0.0)
    ts = TrainState(adapters, tx.init(adapters), jnp.zeros((), jnp.int32))
    if _CHECKPOINT_PATH.value and os.path.exists(_CHECKPOINT_PATH.value):
        ts = TrainState(**mh.io.load(_CHECKPOINT_PATH.value, like=ts._asdict()))
        logging.info("resumed from %s at step %d", _CHECKPOINT_PATH.value, int(ts.step))

    def loss_fn(adapters, base, tokens, targets):
        logits = model.apply({**base, **adapters}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), targets).mean()

    # Only the adapters are differentiated: the base never gets a gradient.
    @jax.jit
    def train_step(ts, base, tokens, targets):
        loss, grads = jax.value_and_grad(loss_fn)(ts.adapters, base, tokens, targets)
        updates, opt_state = tx.update(grads, ts.opt_state, ts.adapters)
        return TrainState(optax.apply_updates(ts.adapters, updates), opt_state, ts.step + 1), loss

    eval_loss = jax.jit(loss_fn)

    def validation(adapters) -> float:
        return float(np.mean([eval_loss(adapters, base, *batch(valid, i, _SEED.value + 1))
                              for i in range(_EVAL_BATCHES.value)]))

    logging.info("step %d validation loss %.3f nats/byte", int(ts.step), validation(ts.adapters))
    last = min(_STEPS.value, _STOP_AFTER.value or _STEPS.value)
    seen, tick = 0, time.perf_counter()
    while int(ts.step) < last:
        step = int(ts.step)
        ts, loss = train_step(ts, base, *batch(train, step, _SEED.value))
        seen += _BATCH_SIZE.value * _SEQ_LEN.value
        if (step + 1) % _LOG_EVERY.value == 0 or step + 1 == last:
            loss = float(loss)
            rate = seen / (time.perf_counter() - tick)
            logging.info("step %d train loss %.3f nats/byte %.0f tokens/s", step + 1, loss, rate)
            seen, tick = 0, time.perf_counter()
    logging.info("step %d validation loss %.3f nats/byte", int(ts.step), validation(ts.adapters))
    if _CHECKPOINT_PATH.value:
        mh.io.save(_CHECKPOINT_PATH.value, ts._asdict())
        logging.info("saved %s", _CHECKPOINT_PATH.value)
    params = {**base, **ts.adapters}
    if _SAMPLE.value:
        logging.info("sample: %r", sample(lm, params))
    if _EXPORT_DIR.value:
        mh.interop.save_hf(_EXPORT_DIR.value, config,
                           mh.peft.merge(params, alpha=_ALPHA.value))
        logging.info("wrote the merged model to %s", _EXPORT_DIR.value)
    logging.info("done in %.1f s", time.perf_counter() - start)


def sample(lm, params) -> str:
    """Generates ``--sample`` bytes after the prompt, one per step, with the KV cache."""
    decoder = mh.transform_with_state(lambda t: lm(t, decode=True))
    step = jax.jit(decoder.apply)
    prompt = jnp.array([list(_PROMPT.value.encode())], jnp.int32)
    key = jax.random.PRNGKey(_SEED.value)
    logits, cache = step(params, mh.nets.init_cache(decoder, prompt), None, prompt)
    out: list[int] = []
    tick = 0.0
    for i in range(_SAMPLE.value):
        if i == 1:  # after the one-token step compiled
            tick = time.perf_counter()
        key, sub = jax.random.split(key)
        token = jax.random.categorical(sub, logits[:, -1] / 0.8)
        out.append(int(token[0]))
        logits, cache = step(params, cache, None, token[:, None])
    if len(out) > 1:
        logging.info("sampled %d bytes at %.0f tokens/s (KV cache)", len(out),
                     (len(out) - 1) / (time.perf_counter() - tick))
    return _PROMPT.value + bytes(b for b in out if b < 256).decode("utf-8", "replace")


if __name__ == "__main__":
    app.run(main)
