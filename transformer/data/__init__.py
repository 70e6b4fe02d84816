"""Data pipeline: raw text (generated samples, local files, HF Hub) to cached token ids and padded batches.

The names below are imported on first use (PEP 562): the configs (data/config.py) do not need torch or datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

HOMES = {
    "TokenBudgetBatchSampler": "transformer.data.batching",
    "collate_classification": "transformer.data.batching",
    "collate_seq2seq": "transformer.data.batching",
    "example_lengths": "transformer.data.batching",
    "padding_efficiency": "transformer.data.batching",
    "DataError": "transformer.data.config",
    "DatasetConfig": "transformer.data.config",
    "TokenizerConfig": "transformer.data.config",
    "PreparedData": "transformer.data.prepare",
    "encode_split": "transformer.data.prepare",
    "load_prepared": "transformer.data.prepare",
    "prepare_dataset": "transformer.data.prepare",
    "prepare_from_config": "transformer.data.prepare",
    "SentencePieceTokenizer": "transformer.data.tokenizer",
    "Tokenizer": "transformer.data.tokenizer",
    "train_tokenizer": "transformer.data.tokenizer",
}
__all__ = sorted(HOMES)


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module 'transformer.data' has no attribute {name!r}")
    return getattr(importlib.import_module(HOMES[name]), name)
