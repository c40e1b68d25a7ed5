"""Which Hugging Face tensor(s) each param path of an ``mh.nets`` decoder is.

A path is turned into a tensor name by rule, not by a table: drop the net's
prefix and the ``__call__`` segments, turn ``layers_3`` into ``layers.3``,
drop the ``_0`` every other module name carries and rename the leaf
(``w``/``scale`` to ``weight``, ``b``/``offset`` to ``bias``):
``~/Llama_0/__call__/layers_3/__call__/self_attn_0/__call__/q_proj_0/__call__/w``
is ``model.layers.3.self_attn.q_proj.weight``. Llama's Linears are stored
``[out, in]`` by PyTorch (transposed here); GPT-2's ``Conv1D`` is ``[in,
out]`` like ours. A ``layer_stack``-ed path stands for one tensor per layer.
"""

import re
from typing import NamedTuple

from minihaiku.nets.gpt2 import GPT2Config
from minihaiku.nets.llama import LlamaConfig

_LEAVES = {"w": "weight", "scale": "weight", "b": "bias", "offset": "bias"}
# Buffers some checkpoints carry that hold no learned weights.
IGNORED = re.compile(r"(^|\.)(attn\.bias|attn\.masked_bias|rotary_emb\.inv_freq)$")


class Entry(NamedTuple):
    """The tensors of one param: one name, or one per layer when stacked."""

    names: tuple[str, ...]
    transpose: bool
    stacked: bool


def net_prefix(config: GPT2Config | LlamaConfig) -> str:
    """The path prefix of the net built at top level, as ``load_hf`` builds it."""
    return "~/GPT2_0/__call__/" if isinstance(config, GPT2Config) else "~/Llama_0/__call__/"


def tensor_map(config: GPT2Config | LlamaConfig, paths: list[str]) -> dict[str, Entry]:
    """``{path: Entry}`` for every param path of the net built from ``config``."""
    gpt2 = isinstance(config, GPT2Config)
    block, outer = ("h", "transformer.") if gpt2 else ("layers", "model.")
    prefix = net_prefix(config)
    out = {}
    for path in paths:
        parts = path[len(prefix):].split("/__call__/")
        leaf = parts.pop()
        if not parts:                    # wte, wpe, embed_tokens: tables at the top
            name = f"{outer}{leaf}.weight"
        else:
            modules = [_module_name(p, block) for p in parts]
            name = ".".join(modules + [_LEAVES[leaf]])
            name = name if name.startswith("lm_head.") else outer + name
        stacked = config.scan_layers and parts[:1] == [f"{block}_0"]
        if stacked:
            first = f"{outer}{block}.0."
            names = tuple(name.replace(first, f"{outer}{block}.{i}.", 1)
                          for i in range(config.num_layers))
        else:
            names = (name,)
        out[path] = Entry(names, not gpt2 and leaf == "w", stacked)
    return out


def _module_name(part: str, block: str) -> str:
    """``layers_3`` -> ``layers.3``; ``q_proj_0`` -> ``q_proj``."""
    match = re.fullmatch(rf"{block}_(\d+)", part)
    return f"{block}.{match.group(1)}" if match else re.sub(r"_0$", "", part)


def canonical(name: str, gpt2: bool) -> str:
    """A tensor name as :func:`tensor_map` spells it (GPT-2 files may lack ``transformer.``)."""
    if gpt2 and not name.startswith("transformer."):
        return "transformer." + name
    return name
