"""The tensors of a Hugging Face checkpoint directory, read lazily with ``safetensors``.

A directory holds ``model.safetensors`` or, when sharded,
``model.safetensors.index.json`` whose ``weight_map`` names the file of
each tensor. Headers (names, shapes, dtypes) are read up front, so every
check happens before any tensor is; a tensor (or the slice of it one device
needs) is read by opening its file memory-mapped just for that read, so the
pages it touched leave the process with the mapping (at most 16 MiB of
them at a time), and the host holds about one tensor beyond the loaded
params.
"""

import json
import os
from typing import Any

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open

from minihaiku import errors

SINGLE = "model.safetensors"
_BLOCK_BYTES = 1 << 16  # Per block of rows read: small enough to stay in cache.
_MAP_BYTES = 1 << 24  # Per mapping of a file (see TensorFiles.read).
INDEX = "model.safetensors.index.json"
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
          "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class TensorFiles:
    """Name -> file, shape and dtype of every tensor of a checkpoint directory."""

    def __init__(self, directory: str):
        self.directory = directory
        self.file: dict[str, str] = {}
        self.shape: dict[str, tuple[int, ...]] = {}
        self.dtype: dict[str, np.dtype] = {}
        if os.path.isfile(os.path.join(directory, SINGLE)):
            files = [SINGLE]
        elif os.path.isfile(os.path.join(directory, INDEX)):
            files = sorted(set(_weight_map(os.path.join(directory, INDEX)).values()))
        else:
            raise errors.CheckpointNotFoundError(
                f"load_hf: '{directory}' has neither {SINGLE} nor {INDEX}. Fix: save the "
                "model with save_pretrained(..., safe_serialization=True), or point at "
                "the directory that holds the weights.")
        for file in files:
            for name, (shape, dtype) in _header(os.path.join(directory, file)).items():
                self.file[name], self.shape[name], self.dtype[name] = file, shape, dtype
        if os.path.isfile(os.path.join(directory, INDEX)) and files != [SINGLE]:
            self._check_index(os.path.join(directory, INDEX))

    def _check_index(self, index_file: str) -> None:
        for name, file in _weight_map(index_file).items():
            if self.file.get(name) != file:
                raise errors.CheckpointError(
                    f"'{index_file}' maps tensor '{name}' to '{file}', which does not "
                    "hold it. Fix: rewrite the index (or re-save the checkpoint).")

    def read(self, name: str, index: tuple[slice, ...], dtype: Any, *,
             transpose: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """The slice ``index`` of tensor ``name`` as a host array of ``dtype``.

        The tensor is read in blocks of rows into a 64-byte aligned array,
        which JAX on CPU adopts without a copy. With ``transpose``, the tensor
        is 2-D and ``index`` slices its transpose: each block is transposed
        into place (numpy's whole-array transposed copy is cache-hostile and
        several times slower). Writes into ``out`` when given.
        """
        path = os.path.join(self.directory, self.file[name])
        full = self.shape[name]
        try:
            if not full:  # A scalar: nothing to block or align.
                with safe_open(path, framework="numpy") as f:
                    return np.asarray(f.get_slice(name)[()], dtype)
            rows, rest = (index[1], index[:1]) if transpose else (index[0], index[1:])
            first, stop, _ = rows.indices(full[0])
            if out is None:
                sizes = [len(range(*s.indices(n))) for s, n in zip(rest, full[1:], strict=True)]
                shape = (*sizes, stop - first) if transpose else (stop - first, *sizes)
                out = aligned_empty(tuple(shape), dtype)
            row_bytes = max(1, int(np.prod(full[1:])) * self.dtype[name].itemsize)
            step = max(1, _BLOCK_BYTES // row_bytes)
            per_map = max(step, _MAP_BYTES // row_bytes)
            # The file's pages a mapping touched count in the process's memory
            # until it is closed: remap every _MAP_BYTES so they never add up
            # to a whole tensor.
            for mapped in range(first, stop, per_map):
                with safe_open(path, framework="numpy") as f:
                    tensor = f.get_slice(name)
                    for start in range(mapped, min(mapped + per_map, stop), step):
                        end = min(start + step, stop)
                        block = tensor[(slice(start, end),) + tuple(rest)]
                        if transpose:
                            out[:, start - first:end - first] = block.T
                        else:
                            out[start - first:end - first] = block
            return out
        except (SafetensorError, OSError) as e:
            raise errors.CheckpointError(
                f"load_hf could not read tensor '{name}' from '{path}': {e}. Fix: check "
                "the file is complete and unchanged since it was opened.") from e


def _weight_map(index_file: str) -> dict[str, str]:
    try:
        with open(index_file) as f:
            weight_map = json.load(f)["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
        return {str(k): str(v) for k, v in weight_map.items()}
    except (ValueError, KeyError, TypeError) as e:
        raise errors.CheckpointError(
            f"'{index_file}' is not a safetensors index ({type(e).__name__}: {e}); it "
            "needs a JSON object with a 'weight_map' of tensor name -> file. Fix: "
            "re-save the checkpoint.") from None


def _header(path: str) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{name: (shape, dtype)}`` from the header of one file, after checking the file."""
    if not os.path.isfile(path):
        raise errors.CheckpointNotFoundError(
            f"load_hf: '{path}' does not exist (the index names it). Fix: download "
            "every shard of the checkpoint.")
    try:
        with safe_open(path, framework="numpy") as f:
            out = {}
            for name in f.keys():
                tensor = f.get_slice(name)
                kind = tensor.get_dtype()
                if kind not in DTYPES:
                    raise errors.CheckpointError(
                        f"'{path}': tensor '{name}' has dtype {kind}, which load_hf "
                        f"does not read ({sorted(DTYPES)}). Fix: convert the checkpoint.")
                out[name] = (tuple(tensor.get_shape()), np.dtype(DTYPES[kind]))
            return out
    except SafetensorError as e:
        raise errors.CheckpointError(
            f"'{path}' is not a complete safetensors file ({e}){_cut_tensors(path)}. "
            "Fix: download or save it again.") from None


def _cut_tensors(path: str) -> str:
    """Names the tensors whose bytes lie past the end of a truncated file, if any."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > size - 8:
                return "; its header is cut off"
            header = json.loads(f.read(n))
        data = size - 8 - n
        cut = [name for name, info in header.items()
               if name != "__metadata__" and info["data_offsets"][1] > data]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return ""
    return f"; truncated: tensors {cut} end past its {size} bytes" if cut else ""


def aligned_empty(shape: tuple[int, ...], dtype: Any, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + align, np.uint8)
    offset = -raw.ctypes.data % align
    return raw[offset:offset + size].view(dtype).reshape(shape)
