"""What the writer and the runtime of an export folder share: file names, formats, graph input/output specs, the
version of export.json, its digest, file hashes, and the error for a folder that cannot be used."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformer.errors import UserError

FORMATS = {"onnx": ".onnx", "torch_export": ".pt2"}
METADATA = "export.json"
VERSION = 2  # 1 (unnumbered): before export.json recorded file hashes, check results and its own digest
GRAPHS = {"classification": ("classifier",), "seq2seq": ("encoder", "decoder_step")}  # the graphs of each objective
DTYPES = ("float32", "int64", "bool")


class ExportError(UserError):
    """An export folder that is missing, damaged or not of this version, or an output folder an export cannot use."""


@dataclass(frozen=True)
class Spec:
    """A graph input or output: its shape (ints, or names of dynamic axes) and dtype."""

    shape: tuple[int | str, ...]
    dtype: str = "float32"  # float32 | int64 | bool

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}


def layer_names(prefix: str, n_layers: int) -> list[str]:
    """[prefix_key_0, prefix_value_0, prefix_key_1, ...]: one key and one value tensor per decoder layer."""
    return [f"{prefix}_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (graphs reach gigabytes)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            sha.update(chunk)
    return sha.hexdigest()


def digest(meta: dict[str, Any]) -> str:
    """export.json's own digest: the SHA-256 of its other keys as compact JSON with sorted keys, so any edit of a
    value shows (the file's layout, indentation and key order, may change)."""
    body = {key: value for key, value in meta.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
