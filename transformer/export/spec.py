"""What the writer and the runtime of an export folder share: file names, formats, graph inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FORMATS = {"onnx": ".onnx", "torch_export": ".pt2"}
METADATA = "export.json"


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
