"""Transformer training framework: attention, models and decoding in plain PyTorch.

The names below are imported on first use (PEP 562), so that the commands compose and check a config, and answer
its errors, without importing torch first.
"""

from __future__ import annotations

import importlib
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
