"""Transformer training framework: attention, models and decoding in plain PyTorch.

The names below are imported on first use (PEP 562), so that the commands compose and check a config, and answer
its errors, without importing torch first.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

HOMES = {
    "EncoderClassifier": "transformer.model",
    "EncoderDecoder": "transformer.model",
    "ModelConfig": "transformer.config",
    "MultiHeadAttention": "transformer.attention",
    "beam_search": "transformer.decoding",
    "greedy_search": "transformer.decoding",
    "named_sizes": "transformer.config",
}
__all__ = sorted(HOMES)


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module 'transformer' has no attribute {name!r}")
    return getattr(importlib.import_module(HOMES[name]), name)


def _source_checkout_configs() -> None:
    """Run from a source checkout with PYTHONPATH=<repo> (no install, e.g. benchmarks/gpu_check.sh on a GPU host),
    the package `transformer.configs` is the repository's configs/ folder, which an install maps (setup.py)."""
    configs = Path(__file__).resolve().parent.parent / "configs"
    if importlib.util.find_spec("transformer.configs") is not None or not (configs / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(
        "transformer.configs", configs / "__init__.py", submodule_search_locations=[str(configs)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["transformer.configs"] = module
    spec.loader.exec_module(module)
    globals()["configs"] = module  # as an import of the submodule would bind it


_source_checkout_configs()
