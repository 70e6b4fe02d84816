"""The corruptions that pretraining learns to undo (task=pretrain): BERT's masked tokens and BART's noise.

- `mask_tokens` (BERT, Devlin et al. 2019): choose `mask_prob` of the tokens (or, with `whole_word`, of the words:
  every piece of a chosen word) as prediction targets; of those, `mask_token` become <mask>, `random_token` a
  random token, the rest stay as they are. Only the chosen positions have a label.
- `denoise` (BART, Lewis et al. 2020, its best setting): shuffle the sentences (`permute_sentences`), then text
  infilling: spans of whole words with Poisson(`span_lambda`) lengths, covering `infill_ratio` of the words, each
  become ONE <mask> (a zero-length span inserts one), `infill_random` of them a random token instead. The
  decoder reconstructs the original text.

The noise of an example is drawn from its own generator, seeded by (seed, epoch, example index): every epoch masks
differently (RoBERTa's dynamic masking), a resumed or multi-process run draws exactly what an uninterrupted one
would (no generator state to save), and validation (epoch -1) always scores the same corruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transformer.errors import ConfigError

IGNORE = -100  # label of the positions the MLM loss skips (F.cross_entropy's default ignore_index)
PRETRAIN_OBJECTIVES = ("mlm", "denoising")


@dataclass
class NoiseConfig:
    """How task=pretrain corrupts its text (model.pretrain_objective picks mlm or denoising)."""

    mask_prob: float = 0.15  # mlm: share of tokens (words with whole_word) to predict
    mask_token: float = 0.8  # mlm: of those, share replaced by <mask>
    random_token: float = 0.1  # mlm: share replaced by a random token; the rest are kept unchanged
    whole_word: bool = False  # mlm: choose whole words (all their pieces) instead of single pieces
    infill_ratio: float = 0.3  # denoising: share of the words covered by masked spans (BART: 0.3)
    span_lambda: float = 3.0  # denoising: mean span length in words (Poisson); 0-length spans insert a <mask>
    infill_random: float = 0.1  # denoising: share of the spans replaced by a random token instead of <mask>
    permute_sentences: float = 1.0  # denoising: share of the examples whose sentences are shuffled (BART: 1.0)

    def __post_init__(self) -> None:
        for name in ("mask_prob", "mask_token", "random_token", "infill_ratio", "infill_random", "permute_sentences"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"noise.{name} must be in [0, 1], got {value}")
        if self.mask_token + self.random_token > 1.0:
            raise ConfigError(
                f"noise.mask_token + noise.random_token = {self.mask_token + self.random_token} exceeds 1: lower one"
            )
        if self.mask_prob == 0.0:
            raise ConfigError("noise.mask_prob=0 leaves nothing to predict: use 0.15 (BERT's)")
        if self.span_lambda <= 0:
            raise ConfigError(f"noise.span_lambda must be > 0, got {self.span_lambda}")


@dataclass
class Vocabulary:
    """What the noise needs to know of a tokenizer, as lookup arrays over ids (Tokenizer.word_starts, ...)."""

    mask_id: int
    word_start: np.ndarray  # (V,) bool: the piece begins a word
    sentence_end: np.ndarray  # (V,) bool: the piece ends a sentence
    normal_ids: np.ndarray  # ids of real text pieces, what a random replacement draws from

    @classmethod
    def of(cls, tokenizer) -> Vocabulary:
        if tokenizer.mask_id is None:
            raise ConfigError(
                "this tokenizer has no <mask> piece, which pretraining needs: pretrain on a text dataset "
                "(objective: text), whose tokenizer reserves it"
            )
        special = np.zeros(tokenizer.vocab_size, dtype=bool)
        special[tokenizer.special_ids()] = True
        return cls(
            mask_id=tokenizer.mask_id,
            word_start=np.asarray(tokenizer.word_starts(), dtype=bool),
            sentence_end=np.asarray(tokenizer.sentence_ends(), dtype=bool),
            normal_ids=np.flatnonzero(~special),
        )


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one example's noise: epoch -1 is validation and test."""
    return np.random.default_rng([seed, epoch + 1, index])


def word_ids(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """(L,) -> (L,) the word each piece belongs to (0-based); the first piece always starts a word."""
    starts = vocab.word_start[ids].copy()
    if len(starts):
        starts[0] = True
    return np.cumsum(starts) - 1


def mask_tokens(
    ids: Sequence[int], vocab: Vocabulary, config: NoiseConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One example's MLM input and labels (L,) each: labels hold the original id where a prediction is due,
    IGNORE elsewhere. At least one token is chosen, so that every example has a target."""
    ids = np.asarray(ids, dtype=np.int64)
    units = word_ids(ids, vocab) if config.whole_word else np.arange(len(ids))  # what is chosen together
    chosen = (rng.random(int(units[-1]) + 1 if len(ids) else 0) < config.mask_prob)[units]
    if len(ids) and not chosen.any():
        chosen = units == units[rng.integers(len(ids))]
    labels = np.where(chosen, ids, IGNORE)
    action = rng.random(len(ids))  # < mask_token: <mask>; then random_token: a random token; else unchanged
    inputs = ids.copy()
    inputs[chosen & (action < config.mask_token)] = vocab.mask_id
    randomized = chosen & (action >= config.mask_token) & (action < config.mask_token + config.random_token)
    inputs[randomized] = rng.choice(vocab.normal_ids, size=int(randomized.sum()))
    return inputs, labels


def permute_sentences(ids: np.ndarray, vocab: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """The sentences of one example (pieces up to and including a sentence end) in a random order."""
    ends = np.flatnonzero(vocab.sentence_end[ids][:-1]) + 1  # a sentence end as the last piece splits nothing
    if len(ends) == 0:
        return ids
    sentences = np.split(ids, ends)
    return np.concatenate([sentences[i] for i in rng.permutation(len(sentences))])


def infill(ids: np.ndarray, vocab: Vocabulary, config: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """BART's text infilling on one example: spans of whole words replaced by a single <mask> each."""
    if len(ids) == 0:
        return ids
    words = word_ids(ids, vocab)
    n_words = int(words[-1]) + 1
    budget = int(round(n_words * config.infill_ratio))
    if budget == 0:
        return ids
    lengths: list[int] = []
    while sum(lengths) < budget:
        lengths.append(int(rng.poisson(config.span_lambda)))
    lengths[-1] -= sum(lengths) - budget
    lengths = lengths[:n_words]
    starts = np.sort(rng.choice(n_words, size=len(lengths), replace=False))
    bounds = np.searchsorted(words, np.arange(n_words + 1))  # word w is ids[bounds[w]:bounds[w + 1]]
    out, next_word = [], 0
    for start, length in zip(starts.tolist(), lengths, strict=True):
        start = max(start, next_word)  # spans that overlap the previous one continue after it
        if start > n_words or (start == n_words and length > 0):
            break
        out.append(ids[bounds[next_word] : bounds[start]])
        token = rng.choice(vocab.normal_ids) if rng.random() < config.infill_random else vocab.mask_id
        out.append(np.asarray([token], dtype=ids.dtype))
        next_word = min(start + length, n_words)
    out.append(ids[bounds[next_word] :])
    return np.concatenate(out)


def denoise(ids: Sequence[int], vocab: Vocabulary, config: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """One example's corrupted source for the encoder-decoder; the target is the original `ids`."""
    ids = np.asarray(ids, dtype=np.int64)
    if config.permute_sentences and rng.random() < config.permute_sentences:
        ids = permute_sentences(ids, vocab, rng)
    return infill(ids, vocab, config, rng)
