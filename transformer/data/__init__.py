"""Data pipeline: raw text (generated samples, local files, HF Hub) to cached token ids and padded batches."""

from transformer.data.batching import (
    TokenBudgetBatchSampler,
    collate_classification,
    collate_seq2seq,
    example_lengths,
    padding_efficiency,
)
from transformer.data.config import DataError, DatasetConfig, TokenizerConfig
from transformer.data.prepare import PreparedData, encode_split, load_prepared, prepare_dataset, prepare_from_config
from transformer.data.tokenizer import Tokenizer, train_tokenizer

__all__ = [
    "DataError",
    "DatasetConfig",
    "PreparedData",
    "TokenBudgetBatchSampler",
    "Tokenizer",
    "TokenizerConfig",
    "collate_classification",
    "collate_seq2seq",
    "encode_split",
    "example_lengths",
    "load_prepared",
    "padding_efficiency",
    "prepare_dataset",
    "prepare_from_config",
    "train_tokenizer",
]
