"""Tokenizers: the interface every one has (`Tokenizer`), and the SentencePiece one trained here from an in-memory
iterator, with special ids pad 0, unk 1, bos 2, eos 3.

A tokenizer is its bytes (`to_bytes`): training code embeds them in checkpoints, and `Tokenizer.from_bytes`
restores the right kind without any file: a SentencePiece model proto, or a pretrained model's tokenizer
(data/pretrained_tokenizer.py: a Hugging Face `tokenizer.json`, or Marian's SentencePiece + vocabulary layout).
Nothing else assumes the ids 0-3: every user reads `pad_id`, `bos_id`, `eos_id` and `decoder_start_id` off the
tokenizer (or the ModelConfig, which build_model_config fills from it).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from transformer.data.config import DataError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MASK_PIECE = "<mask>"  # trained into pretraining tokenizers (id 4), always one piece
SENTENCE_ENDS = (".", "!", "?")
KINDS: dict[str, type[Tokenizer]] = {}  # stored kinds (JSON documents) -> their class, filled by __init_subclass__


class Tokenizer:
    """What every tokenizer offers. Subclasses set the special ids and implement the abstract methods.

    `encode` gives a source's ids with whatever special tokens the model reads around them (none for
    SentencePiece, [CLS] ... [SEP] for BERT, ... </s> for Marian); `encode_target` a target's ids without the
    final eos, which the collate functions add (as they put `decoder_start_id` before the decoder's input).
    Equal, hashed and pickled by its bytes.
    """

    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int
    decoder_start_id: int  # the decoder's first input: bos here, eos for BART, pad for Marian
    kind: str

    @staticmethod
    def from_bytes(data: bytes) -> Tokenizer:
        """The tokenizer stored as `data`: a SentencePiece proto, or a JSON document {"kind": ...} of a kind that a
        subclass registered (data/pretrained_tokenizer.py, which the checkpoint, cache and export readers import)."""
        data = bytes(data)
        if not data.startswith(b"{"):
            return SentencePieceTokenizer(data)
        kind = json.loads(data).get("kind")
        if kind not in KINDS:
            raise DataError(f"unknown stored tokenizer kind {kind!r}: a newer version of the package wrote it")
        return KINDS[kind](data)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            KINDS[cls.kind] = cls

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return Tokenizer.from_bytes(Path(path).read_bytes())

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        return self.encode(texts)

    def decode_ids(self, ids: list[int]) -> str:
        """The text of content ids (no special ones)."""
        raise NotImplementedError

    def id_to_piece(self, i: int) -> str:
        raise NotImplementedError

    def special_ids(self) -> list[int]:
        raise NotImplementedError

    @property
    def mask_id(self) -> int | None:
        return None

    def decode(self, ids: Sequence[int] | Any) -> str:
        """Text of one sequence: stops at the first eos after the content, drops the special ids."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        special = set(self.special_ids())
        kept: list[int] = []
        for i in ids:
            if i == self.eos_id and kept:
                break
            if i not in special:
                kept.append(i)
        return self.decode_ids(kept)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and other.to_bytes() == self.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __getstate__(self) -> bytes:
        return self.to_bytes()

    def __setstate__(self, state: bytes) -> None:
        self.__init__(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model with pad=0, unk=1, bos=2, eos=3 (the ones train_tokenizer makes)."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID
    decoder_start_id = BOS_ID
    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise DataError(f"tokenizer has special ids (pad, unk, bos, eos)={ids}; expected (0, 1, 2, 3)")

    def to_bytes(self) -> bytes:
        return self._proto

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without bos/eos (the collate functions add them)."""
        return self._sp.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[int] | Any) -> str:
        """Text of one sequence: stops at the first eos after the content, drops pad and bos."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        kept: list[int] = []
        for i in ids:
            if i == EOS_ID and kept:
                break
            if i not in (PAD_ID, BOS_ID, EOS_ID):
                kept.append(i)
        return self._sp.decode(kept)

    def decode_ids(self, ids: list[int]) -> str:
        return self._sp.decode(list(ids))

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(i)

    @property
    def mask_id(self) -> int | None:
        """The id of <mask> (pretraining tokenizers, see train_tokenizer), or None."""
        i = self._sp.piece_to_id(MASK_PIECE)
        return None if i == UNK_ID else i

    def special_ids(self) -> list[int]:
        """Ids that are not text: pad, unk, bos, eos and <mask>; masking and random replacement skip them."""
        return [i for i in range(self.vocab_size) if self._special(i)]

    def _special(self, i: int) -> bool:
        sp = self._sp
        return sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or sp.id_to_piece(i) == MASK_PIECE

    def word_starts(self) -> list[bool]:
        """Per id: whether the piece begins a word (SentencePiece marks that with U+2581), for whole-word masking.
        Special ids count as word starts, so they are never merged into the word before them."""
        return [self._special(i) or self._sp.id_to_piece(i).startswith("\u2581") for i in range(self.vocab_size)]

    def sentence_ends(self) -> list[bool]:
        """Per id: whether the piece ends a sentence (its text ends with . ! or ?), for sentence permutation."""
        pieces = (self._sp.id_to_piece(i) for i in range(self.vocab_size))
        return [not self._special(i) and piece.endswith(SENTENCE_ENDS) for i, piece in enumerate(pieces)]

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


def train_tokenizer(
    sentences: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    input_sentence_size: int = 1_000_000,
    setting: str = "tokenizer.vocab_size",
    mask: bool = False,
) -> SentencePieceTokenizer:
    """Train a SentencePiece model on `sentences` in memory (no temp files, no log output).

    `mask`: reserve the piece <mask> (id 4) for pretraining. `setting` names the config key that sets
    `vocab_size`, for the error when the corpus is too small for it.
    """
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_piece="<pad>",
            unk_piece="<unk>",
            bos_piece="<s>",
            eos_piece="</s>",
            user_defined_symbols=[MASK_PIECE] if mask else [],
            num_threads=os.cpu_count() or 1,
            minloglevel=2,  # errors only: the trainer's INFO lines would flood every prepare
        )
    except RuntimeError as e:
        message = str(e).strip().splitlines()[-1]
        limit = re.search(r"value <= (\d+)", message)
        if limit:
            raise DataError(
                f"{setting}={vocab_size} is too large for this corpus: lower it to at most {limit.group(1)}"
            ) from None
        chars = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
        if chars:
            raise DataError(
                f"{setting}={vocab_size} is too small for the characters of this corpus: raise it above "
                f"{chars.group(1)}, or lower dataset.tokenizer.character_coverage"
            ) from None
        if "No sentences" in message or "empty" in message.lower():
            raise DataError(f"cannot train the tokenizer: no training text ({message})") from None
        raise DataError(f"SentencePiece training failed: {message}") from None
    return SentencePieceTokenizer(model.getvalue())
