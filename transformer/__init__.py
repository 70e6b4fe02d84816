"""Transformer training framework: attention, models and decoding in plain PyTorch."""

from transformer.attention import MultiHeadAttention
from transformer.config import NAMED_SIZES, ModelConfig
from transformer.decoding import beam_search, greedy_search
from transformer.model import EncoderClassifier, EncoderDecoder, build_model

__all__ = [
    "NAMED_SIZES",
    "EncoderClassifier",
    "EncoderDecoder",
    "ModelConfig",
    "MultiHeadAttention",
    "beam_search",
    "build_model",
    "greedy_search",
]
