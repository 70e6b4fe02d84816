"""Transformer training framework: attention, models and decoding in plain PyTorch."""

from transformer.attention import MultiHeadAttention
from transformer.config import ModelConfig, named_sizes
from transformer.decoding import beam_search, greedy_search
from transformer.model import EncoderClassifier, EncoderDecoder

__all__ = [
    "EncoderClassifier",
    "EncoderDecoder",
    "ModelConfig",
    "MultiHeadAttention",
    "beam_search",
    "greedy_search",
    "named_sizes",
]
