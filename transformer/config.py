"""Typed configuration of the building blocks: the model (the schema of the Hydra `model` group) and its named sizes
(tiny, small, base, big), decoding and the optimizer. Plain dataclasses without torch, so that the commands
compose and check a config, and answer its errors, before torch is imported; model.py, decoding.py and optim.py
use them.

The named sizes are the files of the `model` group (configs/model/*.yaml), read by `ModelConfig.named`,
so a size is defined once for the CLI and for Python callers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
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
    fused_loss: bool = True  # seq2seq: projection + cross-entropy by chunks, without the (N, V) logits (loss.py)
    pretrain_objective: str = "mlm"  # task=pretrain only: mlm (an encoder, BERT) | denoising (encoder-decoder, BART)
    # special ids, filled in from the tokenizer (build_model_config); these defaults are SentencePiece's here
    bos_id: int = 2
    eos_id: int = 3
    decoder_start_id: int | None = None  # the decoder's first input; None: bos_id (BART: eos, Marian: pad)
    # switches of pretrained families (transformer/hf/), each off by default: BERT, RoBERTa, BART and Marian
    scale_embeddings: bool = True  # token embeddings times sqrt(D) in the encoder (off in BERT, RoBERTa, BART)
    decoder_scale_embeddings: bool | None = None  # the same in the decoder; None: as scale_embeddings
    position_offset: int = 0  # learned positions start at this row (2 in RoBERTa and BART)
    token_types: int = 0  # rows of a token-type embedding, whose row 0 is added at every position (BERT: 2)
    embed_norm: bool = False  # a LayerNorm on the embedding sum (BERT, RoBERTa, BART)
    output_bias: bool = False  # a fixed (not trained) bias on the output logits (BART, Marian: final_logits_bias)

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
            # sinusoidal_halves: Marian's layout, the sines in the first half of each vector, the cosines after
            "positional": ("sinusoidal", "learned", "sinusoidal_halves"),
            "pooling": ("mean", "first", "pooler"),  # pooler: BERT's tanh(dense(first token))
            "backend": ("auto", "sdpa", "explicit"),
            "activation": ("relu", "gelu", "silu"),
            "pretrain_objective": ("mlm", "denoising"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ModelConfig.{name}={getattr(self, name)!r} is not one of {allowed}")
        for name in ("pad_id", "bos_id", "eos_id", "decoder_start_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.tgt_vocab_size and not 0 <= value < self.vocab_size:
                raise ConfigError(f"{name}={value} is outside the vocabulary [0, {self.vocab_size})")
        if not 0 <= self.position_offset < self.max_positions:
            raise ConfigError(
                f"position_offset={self.position_offset} leaves no position of max_positions={self.max_positions}"
            )
        if not isinstance(self.token_types, int) or self.token_types < 0:
            raise ConfigError(f"ModelConfig.token_types must be a non-negative integer, got {self.token_types!r}")
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
    def start_id(self) -> int:
        """The decoder's first input id."""
        return self.bos_id if self.decoder_start_id is None else self.decoder_start_id

    @property
    def max_length(self) -> int:
        """The longest sequence the positions cover."""
        return self.max_positions - self.position_offset

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


@dataclass
class DecodingConfig:
    beam_size: int = 4
    length_penalty: float = 1.0
    max_len_a: float = 1.2  # budget of a*source_length + b generated tokens
    max_len_b: int = 10
    min_len: int = 0  # no EOS before this many tokens (fairseq --min-len), unless the budget ends first
    val_beam_size: int | None = 1  # validation during training: 1 is greedy (fast); None: beam_size
    val_max_batches: int | None = None  # decode only the first batches of validation (loss uses all)
    nbest: int = 1  # hypotheses returned per input (<= beam_size; with sampling, that many samples)
    no_repeat_ngram_size: int = 0  # > 0: never emit an n-gram of this many tokens twice (fairseq, HF)
    sampling: bool = False  # draw each token instead of searching (beam_size is then unused)
    temperature: float = 1.0  # sampling: logits / temperature
    top_k: int = 0  # sampling: only the k most likely tokens (0: all)
    top_p: float = 1.0  # sampling: only the smallest set of tokens whose probability reaches p (nucleus)
    seed: int | None = None  # sampling: the same seed draws the same outputs; None draws fresh ones

    def __post_init__(self) -> None:
        if self.beam_size < 1 or (self.val_beam_size is not None and self.val_beam_size < 1):
            raise ConfigError(f"beam sizes must be >= 1, got {self.beam_size} / {self.val_beam_size}")
        if self.min_len < 0:
            raise ConfigError(f"decoding.min_len must be >= 0, got {self.min_len}")
        if self.nbest < 1 or (not self.sampling and self.nbest > self.beam_size):
            raise ConfigError(
                f"decoding.nbest={self.nbest} must be between 1 and decoding.beam_size={self.beam_size}: raise the "
                f"beam size, or sample (decoding.sampling=true)"
            )
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"decoding.no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if self.top_k < 0:
            raise ConfigError(f"decoding.top_k must be >= 0 (0: all tokens), got {self.top_k}")
        for key, (low, high, why) in BOUNDS.items():
            value = getattr(self, key)
            if not low <= value <= high:  # written so that NaN fails too
                raise ConfigError(f"decoding.{key}={value} is outside [{low:g}, {high:g}]: {why}")


# The settings' sane ranges. Beyond them the arithmetic breaks rather than the search: logits / 1e-300 are inf and
# sample NaN; a top_p below float32's smallest number rounds to 0 and bans every token; a * length in float32 is inf
# for a = 1e308, and inf cast to a length is a 1-token budget; length ** 1e300 overflows a score.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "temperature": (0.01, 100.0, "below 0.01 sampling is argmax (decoding.sampling=false), above 100 uniform"),
    "top_p": (1e-6, 1.0, "the nucleus' probability mass; below 1e-6 it is the most likely token alone (top_k=1)"),
    "max_len_a": (0.0, 100.0, "the budget is a * source tokens + b, and the model's positions cap it anyway"),
    "max_len_b": (0, 100_000, "the budget is a * source tokens + b, and the model's positions cap it anyway"),
    "length_penalty": (-10.0, 10.0, "scores divide by length ** length_penalty, which over- or underflows beyond"),
}


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9
    weight_decay: float = 0.01
    schedule: str = "noam"  # "noam" (inverse square root) | "cosine" | "constant"
    warmup_steps: int = 400
    min_lr_ratio: float = 0.0  # cosine: final lr = min_lr_ratio * lr
    label_smoothing: float = 0.1
    no_decay: list[str] = field(default_factory=lambda: ["bias", "norm", "embed"])
    # lr of depth d = lr * layer_decay ** (L + 1 - d): 0 embeddings, 1..L the blocks bottom-up, L + 1 the rest; 1 = off
    layer_decay: float = 1.0
    # the embeddings (token and learned positions) are not updated in the first N optimizer steps; 0 = off
    freeze_embeddings_steps: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in ("noam", "cosine", "constant"):
            raise ConfigError(f"optim.schedule={self.schedule!r} is not one of ('noam', 'cosine', 'constant')")
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers, got {list(self.betas)}")
        self.betas = tuple(self.betas)
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(
                f"optim.layer_decay must be in (0, 1], got {self.layer_decay}: set 1 for none, e.g. 0.75 to fine-tune"
            )
        if self.freeze_embeddings_steps < 0:
            raise ConfigError(
                f"optim.freeze_embeddings_steps must be >= 0, got {self.freeze_embeddings_steps}: set 0 for none"
            )
