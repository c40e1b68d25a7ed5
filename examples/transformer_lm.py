r"""A decoder-only, character-level transformer trained on the Python docs.

The corpus is ``pydoc_data.topics``: the text of the Python documentation's
topics that every Python install ships (~465k characters), split 90/10 into
train and validation. The model is built from ``mh.nn`` (Embed,
MultiHeadAttention with a causal mask, RMSNorm, MLP) inside
``mh.lifted.layer_stack`` (one scan over the layers), optionally
rematerialised with ``mh.lifted.remat``, and trained with optax AdamW under a
warmup + cosine schedule.

  python examples/transformer_lm.py --plot_path=/tmp/lm.png --sample=300

Losses are logged in bits per character next to the unigram entropy of the
corpus (what a model that ignores context would get). ``--mesh=data:4,model:2``
shards params and batch over all local devices with ``mh.sharding`` rules;
``--multihost`` calls ``jax.distributed.initialize()`` first.
``--checkpoint_path`` saves params, optimizer state and step with ``mh.io`` and
resumes from that file, continuing the same loss curve (batches are a
function of the step). ``--sample=N`` generates N characters one token per
step with the attention decoding cache; past ``--seq_len`` characters the
context slides (the cache is refilled with the last ``seq_len // 2``).
"""

import math
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

_D_MODEL = flags.DEFINE_integer("d_model", 128, "Width of the residual stream.")
_NUM_LAYERS = flags.DEFINE_integer("num_layers", 4, "Transformer blocks (one layer_stack).")
_NUM_HEADS = flags.DEFINE_integer("num_heads", 4, "Attention heads.")
_NUM_KV_HEADS = flags.DEFINE_integer("num_kv_heads", None,
                                     "Key/value heads (grouped-query attention); default all.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Training context length in characters.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Sequences per step.")
_STEPS = flags.DEFINE_integer("steps", 400, "Training steps.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "Peak AdamW learning rate.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 40, "Linear warmup steps.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay (not on norms).")
_REMAT = flags.DEFINE_bool("remat", False, "Rematerialise each block (mh.lifted.remat).")
_MESH = flags.DEFINE_string("mesh", None,
                            "Device mesh, e.g. 'data:4,model:2' (product = device count).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                               "Compute dtype (params stay float32) via mh.precision.")
_CHECKPOINT_PATH = flags.DEFINE_string(
    "checkpoint_path", None, "Resume from this mh.io file if it exists; save to it at the end.")
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 0, "With --checkpoint_path, also save every this many steps.")
_STOP_AFTER = flags.DEFINE_integer(
    "stop_after", 0, "Stop this run after this many steps of the schedule (as if preempted); "
    "rerun with --checkpoint_path to resume.")
_SAMPLE = flags.DEFINE_integer(
    "sample", 0, "Generate this many characters after training (past --seq_len the context "
    "slides: the last seq_len/2 characters are kept).")
_PROMPT = flags.DEFINE_string("prompt", "The ", "Prompt for --sample.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Sampling temperature.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the init, the batches and the sampling.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 50, "Log losses every this many steps.")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", 8, "Validation batches per evaluation.")
_PLOT_PATH = flags.DEFINE_string("plot_path", None, "Write train/validation curves here.")

_LN2 = math.log(2.0)


class Corpus(NamedTuple):
    train: np.ndarray      # int32 character ids
    valid: np.ndarray
    vocab: str             # id -> character
    unigram_bits: float    # entropy of the train characters, in bits


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    step: Any


def load_corpus() -> Corpus:
    """The Python docs' topics, as character ids, split 90/10."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    vocab = "".join(sorted(set(text)))
    ids = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    lookup = {ord(c): i for i, c in enumerate(vocab)}
    table = np.zeros(max(lookup) + 1, np.int32)
    for code, i in lookup.items():
        table[code] = i
    ids = table[ids]
    split = int(len(ids) * 0.9)
    counts = np.bincount(ids[:split], minlength=len(vocab)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return Corpus(ids[:split], ids[split:], vocab, float(-(p * np.log2(p)).sum()))


def batch(data: np.ndarray, step: int, seed: int, batch_size: int, seq_len: int) -> tuple:
    """Batch ``step``: ``batch_size`` random windows, a pure function of the step."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(data) - seq_len - 1, batch_size)
    windows = np.stack([data[s:s + seq_len + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]


class Block(mh.Module):
    """A pre-norm transformer block: causal self-attention, then an MLP."""

    def __init__(self, d_model: int, num_heads: int, num_kv_heads, cache_size=None,
                 name=None):
        super().__init__(name=name)
        self.d_model, self.num_heads = d_model, num_heads
        self.num_kv_heads, self.cache_size = num_kv_heads, cache_size

    def __call__(self, x):
        d = self.d_model
        h = mh.nn.RMSNorm(axis=-1)(x)
        attn = mh.nn.MultiHeadAttention(
            num_heads=self.num_heads, key_size=d // self.num_heads, model_size=d,
            w_init=jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
            num_kv_heads=self.num_kv_heads, cache_size=self.cache_size)
        x = x + attn(h, h, h, is_causal=True)
        h = mh.nn.RMSNorm(axis=-1)(x)
        return x + mh.nn.MLP([4 * d, d], activation=jax.nn.gelu)(h)


def make_model(vocab_size: int, cache_size=None):
    """``f(tokens [B, T], positions [T]) -> logits [B, T, vocab]``, unstransformed."""

    def model(tokens, positions):
        d = _D_MODEL.value
        embed = mh.nn.Embed(vocab_size, d, w_init=jax.nn.initializers.normal(1.0))
        pos = mh.get_param("positions", (_SEQ_LEN.value, d),
                           init=jax.nn.initializers.normal(0.1))
        x = embed(tokens) + pos[positions]

        def block(x):
            return Block(d, _NUM_HEADS.value, _NUM_KV_HEADS.value, cache_size)(x)

        if _REMAT.value:
            block = mh.lifted.remat(block)
        x = mh.lifted.layer_stack(_NUM_LAYERS.value)(block)(x)
        x = mh.nn.RMSNorm(axis=-1)(x)
        return mh.nn.Linear(vocab_size, w_init=jax.nn.initializers.zeros)(x)

    return model


def sharding_rules():
    """Tensor parallel over ``model`` (heads, MLP width), FSDP-style over ``data``."""
    from jax.sharding import PartitionSpec as P

    return [
        (r"(query|key|value)_0/__call__/w$", P("data", "model")),
        (r"(query|key|value)_0/__call__/b$", P("model")),
        (r"MultiHeadAttention_0/__call__/linear_0/__call__/w$", P("model", "data")),
        (r"MLP_0/__call__/Linear_0/__call__/w$", P("data", "model")),
        (r"MLP_0/__call__/Linear_0/__call__/b$", P("model")),
        (r"MLP_0/__call__/Linear_1/__call__/w$", P("model", "data")),
        (r"embeddings$", P(None, "model")),
    ]


def loss_bits(apply, params, tokens, targets):
    logits = apply(params, None, tokens, jnp.arange(tokens.shape[1]))
    nats = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return nats.mean() / _LN2


def main(argv):
    del argv  # Unused.
    cli.quiet_logs()
    if _MULTIHOST.value:
        jax.distributed.initialize()
    start = time.perf_counter()
    corpus = load_corpus()
    logging.info("corpus: %d train, %d validation characters, vocab %d, unigram entropy "
                 "%.3f bits/char", len(corpus.train), len(corpus.valid), len(corpus.vocab),
                 corpus.unigram_bits)
    if _PRECISION.value == "bfloat16":
        # Params stay float32, blocks compute in bfloat16 (norms in float32).
        mh.precision.set_policy(Block, "params=float32,compute=bfloat16,output=float32")
    net = mh.transform(make_model(len(corpus.vocab)))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, _LEARNING_RATE.value, _WARMUP.value, max(_STEPS.value, _WARMUP.value + 1),
        end_value=_LEARNING_RATE.value * 0.1)

    def decayed(params):  # No weight decay on norm scales, biases and offsets.
        return {p: not p.endswith(("/scale", "/b", "/offset")) for p in params}

    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(schedule, weight_decay=_WEIGHT_DECAY.value, mask=decayed))
    tokens0, _ = batch(corpus.train, 0, _SEED.value, _BATCH_SIZE.value, _SEQ_LEN.value)
    positions0 = np.arange(_SEQ_LEN.value)

    mesh = mh.sharding.mesh(_MESH.value) if _MESH.value else None
    if mesh is None:
        params = jax.jit(net.init)(_SEED.value, tokens0, positions0)
        put_batch = jnp.asarray
    else:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        params = mh.sharding.init(net.init, sharding_rules(), mesh)(
            _SEED.value, tokens0, positions0)
        batch_sharding = NamedSharding(mesh, P("data", None) if "data" in mesh.axis_names
                                       else P())

        def put_batch(a):
            return jax.make_array_from_process_local_data(batch_sharding, a)
    ts = TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))
    if _CHECKPOINT_PATH.value and os.path.exists(_CHECKPOINT_PATH.value):
        loaded = mh.io.load(_CHECKPOINT_PATH.value, like=ts._asdict())
        ts = jax.tree_util.tree_map(
            lambda new, old: jax.device_put(new, old.sharding), TrainState(**loaded), ts)
        logging.info("resumed from %s at step %d", _CHECKPOINT_PATH.value, int(ts.step))
    logging.info("params: %d (%d layers of width %d)", mh.data.size(ts.params),
                 _NUM_LAYERS.value, _D_MODEL.value)

    @jax.jit
    def train_step(ts, tokens, targets):
        loss, grads = jax.value_and_grad(loss_bits, argnums=1)(net.apply, ts.params, tokens,
                                                                targets)
        updates, opt_state = tx.update(grads, ts.opt_state, ts.params)
        return TrainState(optax.apply_updates(ts.params, updates), opt_state, ts.step + 1), loss

    eval_step = jax.jit(lambda params, t, y: loss_bits(net.apply, params, t, y))

    def validation_bits(params):
        losses = [eval_step(params, *map(put_batch, batch(
            corpus.valid, i, _SEED.value + 1, _BATCH_SIZE.value, _SEQ_LEN.value)))
            for i in range(_EVAL_BATCHES.value)]
        return float(np.mean(losses))

    curves = {"train": [], "valid": []}
    seen, tick = 0, time.perf_counter()
    last = min(_STEPS.value, _STOP_AFTER.value or _STEPS.value)
    eta = cli.Eta(_STEPS.value, first_step=int(ts.step))
    while int(ts.step) < last:
        step = int(ts.step)
        tokens, targets = batch(corpus.train, step, _SEED.value, _BATCH_SIZE.value,
                                _SEQ_LEN.value)
        ts, loss = train_step(ts, put_batch(tokens), put_batch(targets))
        seen += tokens.size
        if (step + 1) % _LOG_EVERY.value == 0 or step + 1 == _STEPS.value:
            train_bits = float(loss)
            valid_bits = validation_bits(ts.params)
            rate = seen / (time.perf_counter() - tick)
            curves["train"].append((step + 1, train_bits))
            curves["valid"].append((step + 1, valid_bits))
            logging.info("step %d train %.3f bits/char valid %.3f bits/char (unigram %.3f) "
                         "%.0f tokens/s [%s]", step + 1, train_bits, valid_bits,
                         corpus.unigram_bits, rate, eta(step + 1))
            seen, tick = 0, time.perf_counter()
        if _CHECKPOINT_PATH.value and _CHECKPOINT_EVERY.value and (
                (step + 1) % _CHECKPOINT_EVERY.value == 0):
            save(ts)
    logging.info("done: %d steps in %.1f s", int(ts.step), time.perf_counter() - start)
    if _CHECKPOINT_PATH.value:
        save(ts)
    if _SAMPLE.value:
        text = sample(corpus, ts.params, _PROMPT.value, _SAMPLE.value)
        logging.info("sample:\n%s", text)
    if _PLOT_PATH.value:
        plot(_PLOT_PATH.value, curves, corpus.unigram_bits)


def save(ts: TrainState) -> None:
    """Writes the train state to ``--checkpoint_path`` (one file, atomically)."""
    mh.io.save(_CHECKPOINT_PATH.value, jax.device_get(ts._asdict()))
    logging.info("saved train state at step %d to %s", int(ts.step), _CHECKPOINT_PATH.value)


def sample(corpus: Corpus, params, prompt: str, length: int) -> str:
    """The prompt and ``length`` generated characters, one token per jitted step.

    The attention layers keep their keys and values in a decoding cache (state)
    of ``--seq_len`` positions, so each step runs the model on one new token.
    When the cache is full the context slides: a fresh cache is filled with the
    last ``seq_len // 2`` characters in one call, and decoding goes on. A prompt
    longer than the cache keeps its last ``seq_len // 2`` characters as context.
    """
    vocab = {c: i for i, c in enumerate(corpus.vocab)}
    prompt_ids = [vocab.get(c, 0) for c in prompt] or [0]
    seq_len, keep = _SEQ_LEN.value, max(_SEQ_LEN.value // 2, 1)
    net = mh.transform_with_state(make_model(len(corpus.vocab), cache_size=seq_len))
    _, empty = net.init(0, jnp.zeros((1, 1), jnp.int32), jnp.zeros((1,), jnp.int32))

    @jax.jit
    def feed(cache, tokens, positions, key):
        logits, cache = net.apply(params, cache, None, tokens, positions)
        return cache, jax.random.categorical(key, logits[0, -1] / _TEMPERATURE.value)

    def prefill(context):
        return feed(empty, jnp.asarray([context], jnp.int32), jnp.arange(len(context)),
                    next(keys))

    keys = mh.PRNGSequence(_SEED.value)
    out = list(prompt_ids)
    context = prompt_ids if len(prompt_ids) < seq_len else prompt_ids[-keep:]
    cache, token = prefill(context)
    position = len(context)
    for generated in range(length):
        out.append(int(token))
        if generated + 1 == length:
            break
        if position == seq_len:  # The cache is full: slide the context.
            cache, token = prefill(out[-keep:])
            position = keep
        else:
            cache, token = feed(cache, jnp.asarray([[out[-1]]], jnp.int32),
                                jnp.asarray([position]), next(keys))
            position += 1
    return "".join(corpus.vocab[i] for i in out)


def plot(path: str, curves: dict, unigram_bits: float) -> None:
    """Train and validation bits per character against the step."""
    import matplotlib  # Only needed for --plot_path.
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        if points:
            steps, bits = zip(*points, strict=True)
            ax.plot(steps, bits, marker="o", label=name)
    ax.axhline(unigram_bits, color="gray", linestyle="--", label="unigram entropy")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.set_title("character-level transformer on pydoc_data.topics")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logging.info("wrote plot to %s", path)


if __name__ == "__main__":
    app.run(main)
