"""Typed model configuration (the schema of the Hydra `model` group) and the named sizes (tiny, small, base, big).

The named sizes are the files of the `model` group (configs/model/*.yaml), read by `ModelConfig.named`,
so a size is defined once for the CLI and for Python callers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from typing import Any

import yaml

from transformer.errors import ConfigError


@dataclass
class ModelConfig:
    """Sizes and switches of a Transformer (Vaswani et al., 2017).

    Notation used across the package: B batch, S source length, T target length, D d_model, H heads,
    Dh = D / H head size, F d_ff, V vocabulary size.
    """

    vocab_size: int = 8000
    target_vocab_size: int | None = None  # None: same as vocab_size (required when embeddings are shared)
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1  # on sub-layer outputs and embedding sums (P_drop in the paper)
    attention_dropout: float = 0.0  # on attention weights
    activation_dropout: float = 0.0  # inside the feed-forward, after the activation
    activation: str = "relu"  # relu | gelu
    norm_first: bool = True  # pre-LN (stable without long warmup); False = post-LN as in the paper
    layer_norm_eps: float = 1e-5
    positional: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 1024
    share_embeddings: bool = True  # one token embedding for source and target
    tie_output: bool = True  # output projection = target embedding matrix (transposed)
    pad_id: int = 0
    num_classes: int = 2  # encoder classifier only
    pooling: str = "mean"  # mean | first; encoder classifier only
    backend: str = "auto"  # auto | sdpa | explicit; auto: fused SDPA on GPUs, the explicit path on CPU (faster there)
    copy_attention: bool = False  # pointer-generator (See et al., 2017): seq2seq mixes in copying source tokens
    activation_checkpointing: bool = False  # training recomputes each block's activations in the backward pass
    pretrain_objective: str = "mlm"  # task=pretrain only: mlm (an encoder, BERT) | denoising (encoder-decoder, BART)

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {value!r}")

        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "max_positions", "num_classes"):
            positive(name)
        for name in ("n_encoder_layers", "n_decoder_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"ModelConfig.{name} must be a non-negative integer, got {value!r}")
        if self.target_vocab_size is not None:
            positive("target_vocab_size")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}: "
                f"choose n_heads among the divisors of d_model (e.g. {_divisors_hint(self.d_model)})"
            )
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"ModelConfig.{name} must be in [0, 1), got {value!r}")
        choices = {
            "positional": ("sinusoidal", "learned"),
            "pooling": ("mean", "first"),
            "backend": ("auto", "sdpa", "explicit"),
            "activation": ("relu", "gelu"),
            "pretrain_objective": ("mlm", "denoising"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ModelConfig.{name}={getattr(self, name)!r} is not one of {allowed}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"pad_id={self.pad_id} is outside the vocabulary [0, {self.vocab_size})")
        if self.share_embeddings and self.tgt_vocab_size != self.vocab_size:
            raise ConfigError(
                f"share_embeddings=True needs one vocabulary, but vocab_size={self.vocab_size} and "
                f"target_vocab_size={self.target_vocab_size}: set share_embeddings=False or equal sizes"
            )

        if self.copy_attention and self.tgt_vocab_size != self.vocab_size:
            raise ConfigError(
                f"copy_attention=True copies source ids into the output, so it needs one vocabulary, but "
                f"vocab_size={self.vocab_size} and target_vocab_size={self.target_vocab_size}: use a shared "
                f"vocabulary or set copy_attention=False"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def tgt_vocab_size(self) -> int:
        return self.target_vocab_size or self.vocab_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; valid keys are {sorted(known)}")
        return cls(**values)

    @classmethod
    def named(cls, size: str, **overrides: Any) -> ModelConfig:
        """A named size (`tiny`, `small`, `base`, `big`) with optional overrides (e.g. vocab_size)."""
        sizes = named_sizes()
        if size not in sizes:
            raise ConfigError(f"unknown model size {size!r}; choose one of {sorted(sizes)}")
        return replace(cls(), **{**sizes[size], **overrides})


def _divisors_hint(n: int) -> str:
    return ", ".join(str(d) for d in range(1, min(n, 64) + 1) if n % d == 0)


def named_sizes() -> dict[str, dict[str, Any]]:
    """{size: the values its model/<size>.yaml sets}; base and big are Table 3 of the paper."""
    group = resources.files("transformer.configs") / "model"  # configs/model, shipped as package data
    files = sorted((file for file in group.iterdir() if file.name.endswith(".yaml")), key=lambda file: file.name)
    return {file.name.removesuffix(".yaml"): yaml.safe_load(file.read_text()) or {} for file in files}
