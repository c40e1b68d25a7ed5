"""Hugging Face ``config.json`` dicts to and from the configs of ``mh.nets``."""

from typing import Any

from minihaiku import errors
from minihaiku.nets.gpt2 import ACTIVATIONS, GPT2Config
from minihaiku.nets.llama import LlamaConfig

NetConfig = GPT2Config | LlamaConfig
LLAMA_TYPES = ("llama", "mistral", "qwen2")
MODEL_TYPES = ("gpt2",) + LLAMA_TYPES
_ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM",
                  "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def from_hf(hf: dict, file: str, **overrides: Any) -> NetConfig:
    """The net config of the checkpoint whose ``config.json`` (at ``file``) is ``hf``."""
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise errors.CheckpointError(
            f"'{file}' has model_type={model_type!r}; load_hf reads {list(MODEL_TYPES)}. "
            "Fix: convert the checkpoint with transformers, or build the net by hand.")
    try:
        if model_type == "gpt2":
            return _gpt2(hf, file, overrides)
        return _llama(hf, file, model_type, overrides)
    except KeyError as e:
        raise errors.CheckpointError(
            f"'{file}' (model_type {model_type!r}) lacks the key {e}. Fix: write a "
            "complete config.json (transformers' save_pretrained does).") from None


def _unsupported(file: str, what: str, value: Any) -> errors.CheckpointError:
    return errors.CheckpointError(
        f"'{file}' sets {what}={value!r}, which mh.nets does not implement. Fix: use a "
        "checkpoint without it, or extend the net.")


def _gpt2(hf: dict, file: str, overrides: dict) -> GPT2Config:
    for key, expected in (("scale_attn_weights", True),
                          ("scale_attn_by_inverse_layer_idx", False),
                          ("add_cross_attention", False), ("tie_word_embeddings", True)):
        if hf.get(key, expected) != expected:
            raise _unsupported(file, key, hf[key])
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise _unsupported(file, "activation_function", activation)
    return GPT2Config(
        vocab_size=hf["vocab_size"], hidden_size=hf["n_embd"], num_layers=hf["n_layer"],
        num_heads=hf["n_head"], max_position_embeddings=hf["n_positions"],
        intermediate_size=hf.get("n_inner"), activation=activation,
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        init_std=hf.get("initializer_range", 0.02), **overrides)


def _rope_theta(hf: dict, file: str) -> float:
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling")
    kind = rope.get("rope_type", "default")
    if kind != "default":
        raise _unsupported(file, "rope_parameters.rope_type", kind)
    if scaling and scaling.get("rope_type", scaling.get("type")) != "default":
        raise _unsupported(file, "rope_scaling", scaling)
    return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _llama(hf: dict, file: str, model_type: str, overrides: dict) -> LlamaConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise _unsupported(file, "hidden_act", hf["hidden_act"])
    window = hf.get("sliding_window") if model_type == "mistral" else None
    if model_type == "qwen2" and hf.get("use_sliding_window", False):
        raise _unsupported(file, "use_sliding_window", True)
    if model_type == "qwen2":
        qkv_bias, out_bias = True, False
    else:
        qkv_bias = out_bias = bool(hf.get("attention_bias", False))
    head_dim = hf.get("head_dim")
    if head_dim == hf["hidden_size"] // hf["num_attention_heads"]:
        head_dim = None  # The default; keeps configs equal across a save/load round trip.
    return LlamaConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        head_dim=head_dim, rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(hf, file),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        attention_bias=qkv_bias, attention_out_bias=out_bias,
        mlp_bias=bool(hf.get("mlp_bias", False)), sliding_window=window,
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        init_std=hf.get("initializer_range", 0.02), model_type=model_type, **overrides)


def to_hf(config: NetConfig) -> dict:
    """The ``config.json`` dict transformers reads back as the same model."""
    if isinstance(config, GPT2Config):
        return {"architectures": [_ARCHITECTURES["gpt2"]], "model_type": "gpt2",
                "vocab_size": config.vocab_size, "n_embd": config.hidden_size,
                "n_layer": config.num_layers, "n_head": config.num_heads,
                "n_positions": config.max_position_embeddings,
                "n_inner": config.intermediate_size,
                "activation_function": config.activation,
                "layer_norm_epsilon": config.layer_norm_eps,
                "initializer_range": config.init_std, "tie_word_embeddings": True,
                "torch_dtype": config.dtype}
    kind = config.model_type
    _check_expressible(config)
    hf = {"architectures": [_ARCHITECTURES[kind]], "model_type": kind,
          "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
          "intermediate_size": config.intermediate_size,
          "num_hidden_layers": config.num_layers,
          "num_attention_heads": config.num_heads, "num_key_value_heads": config.kv_heads,
          "head_dim": config.dims, "hidden_act": "silu",
          "rms_norm_eps": config.rms_norm_eps, "rope_theta": config.rope_theta,
          "rope_parameters": {"rope_theta": config.rope_theta, "rope_type": "default"},
          "tie_word_embeddings": config.tie_word_embeddings,
          "max_position_embeddings": config.max_position_embeddings,
          "initializer_range": config.init_std, "torch_dtype": config.dtype}
    if kind == "llama":
        hf.update(attention_bias=config.attention_bias, mlp_bias=config.mlp_bias)
    elif kind == "mistral":
        hf.update(sliding_window=config.sliding_window)
    else:
        hf.update(use_sliding_window=False, sliding_window=None)
    return hf


def _check_expressible(config: LlamaConfig) -> None:
    """Refuses a LlamaConfig its ``model_type`` cannot describe in config.json."""
    kind = config.model_type
    wanted: dict[str, Any] = {}
    if kind not in LLAMA_TYPES:
        wanted["model_type"] = f"one of {list(LLAMA_TYPES)}"
    elif kind == "llama":
        if config.attention_out_bias != config.attention_bias:
            wanted["attention_out_bias"] = config.attention_bias
    else:
        wanted.update({k: v for k, v in (
            ("attention_bias", kind == "qwen2"), ("attention_out_bias", False),
            ("mlp_bias", False)) if getattr(config, k) != v})
    if kind != "mistral" and kind in LLAMA_TYPES and config.sliding_window is not None:
        wanted["sliding_window"] = None
    if wanted:
        have = {k: getattr(config, k) for k in wanted}
        raise errors.CheckpointError(
            f"save_hf: a LlamaConfig with {have} cannot be written as model_type "
            f"{kind!r}, which needs {wanted}. Fix: dataclasses.replace(config, "
            "model_type=...) with the Hugging Face family that has these options.")

