"""Offline default datasets for the three tasks, generated deterministically by code in this package.

Every sample is a synthetic demo sample: made-up text from small grammars written below, not drawn from or
modelled on any corpus, so scores on it say nothing about real-world quality. The samples let training,
evaluation and prediction run end to end without downloads, and each is built so that word order matters and a
bag of words is not enough:

- ``sentiment``: English-like movie reviews from a grammar of about a thousand words. The label follows fixed
  rules (see ``sentiment_label``): a negation flips the polar word it scopes; "A but B", "although A, B",
  "even though A, B" and "A. however, B" are decided by B; "A, although B" and "A even though B" by A. Neutral
  sentences and relative clauses, some with negations of their own, are distractors, and intensifiers do not
  change the label. The same bag of words therefore occurs with both labels.
- ``translation``: English-like sentences into a made-up German-like language with its own lexicon (see
  ``translation_lexicon``): three genders and three cases marked on articles and adjective endings, plural
  suffixes, adjectives after the noun, verb-second order after a fronted adverb or clause, participles and
  infinitives at the end of the clause, and verb-final subordinate clauses. Each source has exactly one
  translation.
- ``summarization``: news or email-like documents of 4-8 sentences. One or two sentences state the key event,
  anywhere in the document, among distractors that share its entities and vocabulary; the target is a headline
  built from that event's facts and worded differently from the source.

Each sample's generator is a module of its own (sentiment.py, translation.py, summarization.py; common.py holds
what they share); generate_sample below writes the splits of any of them.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from transformer.data.samples.common import Example
from transformer.data.samples.sentiment import _review, sentiment_label
from transformer.data.samples.summarization import _document
from transformer.data.samples.translation import _translation_pair, translation_lexicon

__all__ = ["SAMPLE_KINDS", "SPLITS", "SPLIT_SIZES", "generate_sample", "sentiment_label", "translation_lexicon"]

SAMPLE_KINDS = ("sentiment", "translation", "summarization")
SPLITS = ("train", "validation", "test")
# Rows per (train, validation, test): enough for a small model (d=256, 3 layers) to learn each task in minutes
# on a CPU, few enough that tokenizer training and encoding stay quick.
SPLIT_SIZES: dict[str, tuple[int, int, int]] = {
    "sentiment": (20_000, 1_000, 1_000),
    "translation": (30_000, 1_000, 1_000),
    "summarization": (15_000, 1_000, 1_000),
}
_MAKERS: dict[str, Callable[[random.Random], Example]] = {
    "sentiment": _review,
    "translation": _translation_pair,
    "summarization": _document,
}


def generate_sample(kind: str, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` of one sample into ``out_dir``.

    Columns: sentiment ``{"text", "label"}`` with label ``"negative"`` or ``"positive"``; translation and
    summarization ``{"source", "target"}``. The same ``kind`` and ``seed`` give byte-identical files, and no
    example occurs twice anywhere in the sample. Returns the path of each split.
    """
    if kind not in _MAKERS:
        raise ValueError(f"unknown sample kind {kind!r}; choose one of: {', '.join(SAMPLE_KINDS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()  # only tested for membership, so set order never reaches the output
    paths = {}
    for split, size in zip(SPLITS, SPLIT_SIZES[kind], strict=True):
        # A str seed is hashed with SHA-512 (not hash()), so the stream is the same in every process.
        rng = random.Random(f"{kind}/{split}/{seed}")
        lines = _distinct_lines(_MAKERS[kind], rng, size, seen)
        paths[split] = _write_atomic(out_dir / f"{split}.jsonl", lines)
    return paths


def _distinct_lines(
    make: Callable[[random.Random], Example], rng: random.Random, size: int, seen: set[str]
) -> list[str]:
    # Keying on the whole row keeps evaluation rows out of training; a source that came out with two different
    # targets would still show up twice, which the tests check never happens.
    lines: list[str] = []
    for _ in range(20 * size):
        line = json.dumps(make(rng), ensure_ascii=False)
        if line not in seen:
            seen.add(line)
            lines.append(line)
            if len(lines) == size:
                return lines
    raise RuntimeError(f"drew too many duplicates to fill {size} distinct rows")


def _write_atomic(path: Path, lines: list[str]) -> Path:
    # Write a temporary file next to the target and rename it, so a reader never sees half a split.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
            file.write("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
