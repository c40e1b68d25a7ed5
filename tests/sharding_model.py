"""A tiny transformer-like model, its partition rules and a train step.

Shared by ``test_sharding.py`` and the scripts it runs in subprocesses
(``sharding_devices.py`` on 8 host devices, ``sharding_multihost.py`` as one of
2 processes). Built only from ``mh.nn.Linear``, ``LayerNorm``, ``Embed`` and
``mh.lifted.layer_stack``; attention is written out from Linears.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

import minihaiku as mh

VOCAB, DIM, HEADS, HIDDEN, LAYERS, SEQ, BATCH = 32, 16, 4, 32, 2, 8, 16


class Mlp(mh.Module):
    """An MLP whose params name their logical axes."""

    def __call__(self, x):
        w_in = mh.get_param("w_in", (DIM, HIDDEN), init=_init, axes=("embed", "mlp"))
        b_in = mh.get_param("b_in", (HIDDEN,), init=jax.nn.initializers.zeros,
                            axes=("mlp",))
        w_out = mh.get_param("w_out", (HIDDEN, DIM), init=_init, axes=("mlp", "embed"))
        return jax.nn.gelu(x @ w_in + b_in) @ w_out


def _init(key, shape, dtype):
    return jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")(key, shape, dtype)


def block(x, annotated=False):
    h = mh.nn.LayerNorm(name="ln_att")(x)
    q, k, v = (mh.nn.Linear(DIM, name=n)(h).reshape(*h.shape[:-1], HEADS, DIM // HEADS)
               for n in ("q", "k", "v"))
    logits = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(DIM // HEADS)
    causal = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
    weights = jax.nn.softmax(jnp.where(causal, logits, -1e9), axis=-1)
    att = jnp.einsum("bhts,bshd->bthd", weights, v).reshape(x.shape)
    x = x + mh.nn.Linear(DIM, name="o")(att)
    h = mh.nn.LayerNorm(name="ln_mlp")(x)
    if annotated:
        return x + Mlp()(h)
    return x + mh.nn.Linear(DIM, name="down")(jax.nn.gelu(mh.nn.Linear(HIDDEN, name="up")(h)))


def make_model(stacked=True, annotated=False):
    """The model as a ``Transformed``: tokens [B, T] -> logits [B, T, VOCAB]."""
    def f(tokens):
        x = mh.nn.Embed(VOCAB, DIM)(tokens)
        if stacked:
            x = mh.lifted.layer_stack(LAYERS)(lambda x: block(x, annotated))(x)
        else:
            for _ in range(LAYERS):
                x = block(x, annotated)
        x = mh.nn.LayerNorm(name="ln_final")(x)
        return mh.nn.Linear(VOCAB, name="head")(x)
    return mh.without_apply_rng(mh.transform(f))


# Fully sharded data parallel: every matrix split along its first dim over "data".
FSDP_RULES = [(r"(/w|embeddings)$", P("data", None)), (r"/b$", P("data"))]

# Tensor parallel (Megatron): q/k/v/up split their outputs, o/down their inputs.
TP_RULES = [
    (r"/(q|k|v|up|head)_\d+/__call__/w$", P(None, "model")),
    (r"/(q|k|v|up|head)_\d+/__call__/b$", P("model")),
    (r"/(o|down)_\d+/__call__/w$", P("model", None)),
    (r"embeddings$", P(None, "model")),
]

# The same through logical axes for the annotated Mlp, regexes for the rest.
LOGICAL_RULES = [mh.sharding.logical_rules({"embed": None, "mlp": "model"})] + TP_RULES


def batches(steps=20, seed=0):
    """``steps`` batches of token ids [BATCH, SEQ + 1] (inputs and targets)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB, (steps, BATCH, SEQ + 1)).astype(np.int32)


def loss_fn(apply, params, tokens):
    logits = apply(params, tokens[:, :-1])
    labels = jax.nn.one_hot(tokens[:, 1:], VOCAB)
    return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))


def make_train_step(apply, param_shardings=None, batch_sharding=None, lr=0.5):
    """Plain SGD, jitted; with shardings for params and batch if given."""
    def step(params, tokens):
        grads = jax.grad(lambda p: loss_fn(apply, p, tokens))(params)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
    if param_shardings is None:
        return jax.jit(step)
    return jax.jit(step, in_shardings=(param_shardings, batch_sharding),
                   out_shardings=param_shardings)
