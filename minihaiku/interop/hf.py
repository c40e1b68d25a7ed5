"""``load_hf`` / ``save_hf``: Hugging Face checkpoint directories for ``mh.nets`` decoders."""

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, SingleDeviceSharding
from safetensors.numpy import save_file

from minihaiku import errors, sharding
from minihaiku._transform import transform
from minihaiku.interop import _hf_config, _hf_names
from minihaiku.interop._safetensors_files import INDEX, SINGLE, TensorFiles, aligned_empty
from minihaiku.nets.gpt2 import GPT2, GPT2Config
from minihaiku.nets.llama import Llama

CONFIG = "config.json"
_Index = tuple[slice, ...]


def load_hf(directory: str | os.PathLike, mesh: Mesh | None = None, rules: Any = None,
            dtype: Any = None, *, scan_layers: bool = False,
            cache_size: int | None = None) -> tuple[_hf_config.NetConfig, dict]:
    """Loads a Hugging Face GPT-2 or Llama-family checkpoint as ``(net_config, params)``.

    ``directory`` holds ``config.json`` and ``model.safetensors`` (or a
    sharded ``model.safetensors.index.json`` and its files), as
    ``save_pretrained`` writes them; ``model_type`` ``gpt2`` gives an
    :class:`mh.nets.GPT2Config`, ``llama``/``mistral``/``qwen2`` an
    :class:`mh.nets.LlamaConfig`. ``params`` are those of the net built at
    top level, ``mh.transform(lambda t: mh.nets.Llama(config)(t))``.

    Every header is checked first (each expected tensor present, each shape
    right, nothing unknown): a bad checkpoint raises before any tensor is
    read, never half-loaded. Then each param is read memory-mapped and
    placed on its device(s) directly; with ``mesh``, each device reads only
    its own slice of the file, so the host never holds more than about one
    tensor beyond the loaded params.

    Args:
      directory: the checkpoint directory.
      mesh: place params on this mesh, by ``rules`` (replicated if ``rules``
        is None).
      rules: ``mh.sharding`` rules ``[(path_regex, PartitionSpec), ...]``
        for the params' paths; needs ``mesh``.
      dtype: dtype of the params (and of the net's computation); default the
        dtype of the checkpoint's token embedding.
      scan_layers: load the blocks stacked for ``config.scan_layers=True``.
      cache_size: set ``config.cache_size`` (for ``decode=True``).

    Returns:
      ``(config, params)``.

    Raises:
      CheckpointNotFoundError: no directory, ``config.json`` or weights file.
      CheckpointError: an unknown ``model_type`` or unsupported option, a
        missing, unexpected or mis-shaped tensor, a truncated or corrupt
        file; the message names the file and the tensor.

    Example::

      import tempfile
      config = mh.nets.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                   num_layers=2, num_heads=4, num_kv_heads=2)
      f = mh.transform(lambda t: mh.nets.Llama(config)(t))
      params = f.init(0, jnp.zeros([1, 4], jnp.int32))
      with tempfile.TemporaryDirectory() as d:
        mh.interop.save_hf(d, config, params)
        config2, params2 = mh.interop.load_hf(d)   # config2 == config
    """
    directory = os.fspath(directory)
    if rules is not None and mesh is None:
        raise errors.InvalidArgumentError(
            f"load_hf('{directory}', rules=...) got rules but no mesh. Fix: pass "
            "mesh=mh.sharding.mesh(...) too, or drop rules.")
    hf = _read_config(directory)
    tensors = TensorFiles(directory)
    gpt2 = hf.get("model_type") == "gpt2"
    actual = {_hf_names.canonical(n, gpt2): n for n in tensors.file}
    if dtype is None:
        embed = "transformer.wte.weight" if gpt2 else "model.embed_tokens.weight"
        dtype = tensors.dtype[actual[embed]] if embed in actual else np.float32
    config = _hf_config.from_hf(hf, os.path.join(directory, CONFIG),
                                scan_layers=scan_layers, cache_size=cache_size,
                                dtype=jnp.dtype(dtype).name)
    shapes = _param_shapes(config)
    entries = _hf_names.tensor_map(config, list(shapes))
    _check_tensors(directory, tensors, actual, entries, shapes)
    if mesh is None:
        places: Mapping[str, Any] = dict.fromkeys(shapes, SingleDeviceSharding(jax.devices()[0]))
    else:
        places = sharding.shardings(shapes, rules or [], mesh)
    params = {}
    for path, shape in shapes.items():
        read = _reader(tensors, entries[path], actual, shape.shape, shape.dtype)
        params[path] = jax.make_array_from_callback(shape.shape, places[path], read)
    return config, params


def save_hf(directory: str | os.PathLike, net_config: _hf_config.NetConfig,
            params: Mapping[str, Any], *, max_shard_bytes: int | None = None) -> None:
    """Writes ``params`` of an ``mh.nets`` GPT-2 or Llama as a Hugging Face checkpoint.

    Writes ``config.json`` and ``model.safetensors`` (or, when the tensors
    exceed ``max_shard_bytes``, ``model-0000i-of-0000n.safetensors`` files
    and ``model.safetensors.index.json``) in the layout ``save_pretrained``
    uses, so ``load_hf`` and transformers' ``from_pretrained`` read it back;
    tensors keep their dtype and bits. Params are checked against the config
    before anything is written. A new directory appears whole (written
    beside it, then renamed); in an existing one each file is replaced
    atomically, the index last.

    Args:
      directory: the checkpoint directory (created if missing).
      net_config: the :class:`mh.nets.GPT2Config` or :class:`mh.nets.LlamaConfig`.
      params: the net's params, as ``load_hf`` returns them (stacked if
        ``net_config.scan_layers``).
      max_shard_bytes: split the weights into files of at most this many
        bytes (a larger single tensor gets a file of its own).

    Example::

      import tempfile
      config = mh.nets.GPT2Config(vocab_size=64, hidden_size=16, num_layers=2,
                                  num_heads=2, max_position_embeddings=32)
      f = mh.transform(lambda t: mh.nets.GPT2(config)(t))
      params = f.init(0, jnp.zeros([1, 4], jnp.int32))
      with tempfile.TemporaryDirectory() as d:
        mh.interop.save_hf(d, config, params)     # config.json, model.safetensors
    """
    directory = os.fspath(directory)
    if not isinstance(net_config, _hf_config.NetConfig):
        raise errors.InvalidArgumentError(
            f"save_hf got net_config of type {type(net_config).__name__}. Fix: pass "
            "the mh.nets.GPT2Config or LlamaConfig the params belong to.")
    hf = _hf_config.to_hf(net_config)
    shapes = _param_shapes(net_config)
    _check_params(directory, params, shapes)
    entries = _hf_names.tensor_map(net_config, list(shapes))
    tensors = {}
    for path, entry in entries.items():
        value = np.asarray(jax.device_get(params[path]))
        layers = list(value) if entry.stacked else [value]
        for name, layer in zip(entry.names, layers, strict=True):
            tensors[name] = np.ascontiguousarray(layer.T if entry.transpose else layer)
    files = _shard(tensors, max_shard_bytes)
    _write_directory(directory, hf, tensors, files)


def _read_config(directory: str) -> dict:
    if not os.path.isdir(directory):
        raise errors.CheckpointNotFoundError(
            f"load_hf: '{directory}' is not a directory. Fix: pass the directory "
            "save_pretrained (or save_hf) wrote.")
    path = os.path.join(directory, CONFIG)
    try:
        with open(path) as f:
            hf = json.load(f)
    except FileNotFoundError:
        raise errors.CheckpointNotFoundError(
            f"load_hf: '{path}' does not exist. Fix: copy the checkpoint's "
            "config.json next to its weights.") from None
    except ValueError as e:
        raise errors.CheckpointError(
            f"'{path}' is not valid JSON ({e}). Fix: restore the file.") from None
    if not isinstance(hf, dict):
        raise errors.CheckpointError(
            f"'{path}' holds a {type(hf).__name__}, not a JSON object. Fix: restore it.")
    return hf


def _param_shapes(config: _hf_config.NetConfig) -> dict[str, jax.ShapeDtypeStruct]:
    """Path -> shape of the net's params, in creation order.

    Traced with the blocks stacked (one block to trace, whatever the depth);
    unrolled paths are the stacked ones with ``<block>_0`` renumbered.
    """
    stacked = dataclasses.replace(config, scan_layers=True)
    net: type = GPT2 if isinstance(config, GPT2Config) else Llama
    f = transform(lambda t: net(stacked)(t))
    order: list[str] = []

    def init(tokens: jax.Array) -> dict:
        params = f.init(0, tokens)
        order.extend(params)  # eval_shape returns the dict sorted; keep creation order.
        return params

    shapes = jax.eval_shape(init, jnp.zeros((1, 1), jnp.int32))
    if config.scan_layers:
        return {path: shapes[path] for path in order}
    block = "/h_0/" if isinstance(config, GPT2Config) else "/layers_0/"
    in_block = [path for path in order if block in path]
    out = {}
    for path in order:  # Unrolled, init makes layer 0's params, then layer 1's, ...
        if block not in path:
            out[path] = shapes[path]
        elif path == in_block[0]:
            for i in range(config.num_layers):
                for p in in_block:
                    one = jax.ShapeDtypeStruct(shapes[p].shape[1:], shapes[p].dtype)
                    out[p.replace(block, block.replace("_0/", f"_{i}/"), 1)] = one
    return out


def _hf_shape(entry: _hf_names.Entry, shape: tuple[int, ...]) -> tuple[int, ...]:
    one = shape[1:] if entry.stacked else shape
    return one[::-1] if entry.transpose else one


def _check_tensors(directory: str, tensors: TensorFiles, actual: dict[str, str],
                   entries: dict[str, _hf_names.Entry], shapes: dict) -> None:
    """Raises one CheckpointError listing every missing, unexpected or mis-shaped tensor."""
    missing, wrong = [], []
    expected = set()
    for path, entry in entries.items():
        want = _hf_shape(entry, shapes[path].shape)
        for name in entry.names:
            expected.add(name)
            if name not in actual:
                missing.append(name)
            elif tensors.shape[actual[name]] != want:
                real = actual[name]
                wrong.append(f"'{real}' in '{tensors.file[real]}' has shape "
                             f"{tensors.shape[real]}, the config needs {want}")
    unexpected = [f"'{actual[n]}' in '{tensors.file[actual[n]]}'" for n in actual
                  if n not in expected and not _hf_names.IGNORED.search(n)]
    problems = ([f"missing tensors {missing}"] if missing else []) + wrong
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if problems:
        raise errors.CheckpointError(
            f"load_hf('{directory}'): the weights do not fit its config.json: "
            + "; ".join(problems) + ". Fix: use the config.json that came with these "
            "weights (nothing was loaded).")


def _reader(tensors: TensorFiles, entry: _hf_names.Entry, actual: dict[str, str],
            shape: tuple[int, ...], dtype: Any) -> Callable[[_Index | None], np.ndarray]:
    """The ``make_array_from_callback`` callback: the slice ``index`` of one param."""

    def read(index: _Index | None) -> np.ndarray:
        index = tuple(index or ()) + (slice(None),) * (len(shape) - len(index or ()))
        if not entry.stacked:
            return tensors.read(actual[entry.names[0]], index, dtype, transpose=entry.transpose)
        layers = range(shape[0])[index[0]]
        one = tensors.read(actual[entry.names[layers[0]]], index[1:], dtype,
                           transpose=entry.transpose)
        out = aligned_empty((len(layers),) + one.shape, one.dtype)
        out[0] = one
        for i, layer in enumerate(layers[1:], 1):
            tensors.read(actual[entry.names[layer]], index[1:], dtype,
                         transpose=entry.transpose, out=out[i])
        return out

    return read


def _check_params(directory: str, params: Mapping[str, Any], shapes: dict) -> None:
    problems = []
    missing = [p for p in shapes if p not in params]
    unexpected = [p for p in params if p not in shapes]
    if missing:
        problems.append(f"missing params {missing}")
    if unexpected:
        problems.append(f"unexpected params {unexpected}")
    for path, want in shapes.items():
        if path in params and tuple(np.shape(params[path])) != want.shape:
            problems.append(f"'{path}' has shape {tuple(np.shape(params[path]))}, the "
                            f"config needs {want.shape}")
    if problems:
        raise errors.CheckpointError(
            f"save_hf('{directory}'): the params do not fit the config: "
            + "; ".join(problems) + ". Fix: pass the config the params were made with "
            "(scan_layers too); nothing was written.")


def _shard(tensors: dict[str, np.ndarray], max_bytes: int | None) -> list[list[str]]:
    """Tensor names grouped into files of at most ``max_bytes`` (in order)."""
    if max_bytes is None:
        return [list(tensors)]
    files: list[list[str]] = [[]]
    size = 0
    for name, value in tensors.items():
        if files[-1] and size + value.nbytes > max_bytes:
            files.append([])
            size = 0
        files[-1].append(name)
        size += value.nbytes
    return files


def _write_directory(directory: str, hf: dict, tensors: dict[str, np.ndarray],
                     files: list[list[str]]) -> None:
    """Writes the checkpoint: a new directory whole, an existing one file by file."""
    target = os.path.realpath(directory)
    if os.path.exists(target) and not os.path.isdir(target):
        raise errors.CheckpointError(
            f"save_hf: '{directory}' is a file. Fix: pass a directory path.")
    if os.path.isdir(target):
        _write_files(target, hf, tensors, files)
        return
    parent = os.path.dirname(target)
    tmp = tempfile.mkdtemp(prefix=".mh-", suffix=".tmp", dir=parent)
    try:
        _write_files(tmp, hf, tensors, files)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_files(directory: str, hf: dict, tensors: dict[str, np.ndarray],
                 files: list[list[str]]) -> None:
    def replace(name: str, write: Callable[[str], None]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".mh-", suffix=".tmp", dir=directory)
        os.close(fd)
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(directory, name))
        except BaseException:
            if os.path.lexists(tmp):
                os.remove(tmp)
            raise

    def write_json(value: dict) -> Callable[[str], None]:
        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(value, f, indent=2)
                f.write("\n")
        return write

    metadata = {"format": "pt"}
    if len(files) == 1:
        replace(SINGLE, functools.partial(save_file, tensors, metadata=metadata))
        stale = [INDEX]
    else:
        n = len(files)
        weight_map = {}
        for i, names in enumerate(files, 1):
            file = f"model-{i:05d}-of-{n:05d}.safetensors"
            part = {name: tensors[name] for name in names}
            replace(file, functools.partial(save_file, part, metadata=metadata))
            weight_map.update(dict.fromkeys(names, file))
        total = sum(t.nbytes for t in tensors.values())
        replace(INDEX, write_json({"metadata": {"total_size": total},
                                   "weight_map": weight_map}))
        stale = [SINGLE]  # It would shadow the index for readers (transformers' too).
    replace(CONFIG, write_json(hf))
    for name in stale:
        if os.path.lexists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))
