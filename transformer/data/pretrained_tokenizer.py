"""Pretrained models' tokenizers, beside the SentencePiece one trained here (data/tokenizer.py):

    HFTokenizer        a Hugging Face `tokenizer.json` (the `tokenizers` library): WordPiece for BERT, byte-level
                       BPE for RoBERTa and BART; encodes with the model's own special tokens ([CLS] ... [SEP])
    MarianTokenizer    Marian's layout: source.spm / target.spm (SentencePiece) and one vocab.json mapping their
                       pieces to the model's ids; a source ends with </s>

Each is stored as one JSON document {"kind": ...} (its bytes start with "{", which is how Tokenizer.from_bytes tells
it from a SentencePiece proto; the classes register their kind), so a checkpoint holds it as it holds a
SentencePiece model. `read_tokenizers(folder)` reads a
`save_pretrained` folder.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from transformer.data.config import DataError
from transformer.data.tokenizer import SentencePieceTokenizer, Tokenizer

SPECIAL_NAMES = ("pad", "unk", "bos", "eos", "decoder_start")
# where each special token is named in tokenizer_config.json, first found wins (BERT has cls/sep, not bos/eos)
TOKEN_KEYS = {
    "pad": ("pad_token",),
    "unk": ("unk_token",),
    "bos": ("cls_token", "bos_token"),
    "eos": ("sep_token", "eos_token"),
    "mask": ("mask_token",),
}


def _document(kind: str, special: dict[str, int], **values: Any) -> bytes:
    return json.dumps({"kind": kind, "special": special, **values}, sort_keys=True).encode()


class _Pretrained(Tokenizer):
    """The special ids of a stored document."""

    def _set_special(self, special: dict[str, int]) -> None:
        missing = [name for name in SPECIAL_NAMES if special.get(name) is None]
        if missing:
            raise DataError(f"the tokenizer has no {', '.join(missing)} token: pass a folder whose tokenizer has them")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (special[k] for k in ("pad", "unk", "bos", "eos"))
        self.decoder_start_id = special["decoder_start"]
        self._mask_id = special.get("mask")

    def to_bytes(self) -> bytes:
        return self._data

    @property
    def mask_id(self) -> int | None:
        return self._mask_id


class HFTokenizer(_Pretrained):
    """A `tokenizer.json` with its special ids; `encode` adds the model's special tokens (its post-processor)."""

    kind = "tokenizer.json"

    def __init__(self, data: bytes) -> None:
        from tokenizers import Tokenizer as Backend

        self._data = bytes(data)
        doc = json.loads(self._data)
        self._tok = Backend.from_str(doc["tokenizer"])
        self._tok.no_padding()
        self._tok.no_truncation()
        self._set_special(doc["special"])
        ids = {i for i in doc["special"].values() if i is not None}  # mask: None where it has none
        self._special = sorted(set(self._tok.get_added_tokens_decoder()) | ids)

    @classmethod
    def of(cls, tokenizer_json: str, special: dict[str, int]) -> HFTokenizer:
        return cls(_document(cls.kind, special, tokenizer=tokenizer_json))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=True)]

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        """With the special tokens but the final eos (BART: <s> ... ), which the collate functions add."""
        return [ids[:-1] if ids and ids[-1] == self.eos_id else ids for ids in self.encode(texts)]

    def decode_ids(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        return self._tok.id_to_token(i) or ""

    def special_ids(self) -> list[int]:
        return list(self._special)

    def tokenizer_json(self) -> str:
        return json.loads(self._data)["tokenizer"]


class MarianTokenizer(_Pretrained):
    """One side of Marian's tokenizer: that side's SentencePiece model and the shared vocab.json."""

    kind = "marian"

    def __init__(self, data: bytes) -> None:
        import sentencepiece as spm

        self._data = bytes(data)
        doc = json.loads(self._data)
        self._spm = base64.b64decode(doc["spm"])
        self._sp = spm.SentencePieceProcessor(model_proto=self._spm)
        self.vocab: dict[str, int] = doc["vocab"]
        self.side: str = doc["side"]
        self._pieces = {i: piece for piece, i in self.vocab.items()}
        self._set_special(doc["special"])

    @classmethod
    def of(cls, spm_model: bytes, vocab: dict[str, int], special: dict[str, int], side: str) -> MarianTokenizer:
        spm_text = base64.b64encode(spm_model).decode()
        return cls(_document(cls.kind, special, spm=spm_text, vocab=vocab, side=side))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        return [[self.vocab.get(p, self.unk_id) for p in self._sp.encode(t, out_type=str)] for t in texts]

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [ids + [self.eos_id] for ids in self.encode_target(texts)]

    def decode_ids(self, ids: list[int]) -> str:
        return self._sp.decode_pieces([self._pieces[i] for i in ids]).strip()

    def id_to_piece(self, i: int) -> str:
        return self._pieces.get(i, "")

    def special_ids(self) -> list[int]:
        return sorted({self.pad_id, self.unk_id, self.eos_id, self.decoder_start_id})

    def spm_model(self) -> bytes:
        return self._spm


def sentencepiece_as_hf(tokenizer: SentencePieceTokenizer) -> HFTokenizer:
    """A SentencePiece unigram model of ours as the same tokenizer in `tokenizer.json` form (a Unigram model with
    SentencePiece's normalization: its precompiled NFKC map, stripped and collapsed spaces, the U+2581 word marker),
    for format=hf exports of models trained here; it reads text as ours does, without special tokens around it."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as Backend

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tokenizer.to_bytes())
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        raise DataError("only unigram SentencePiece models convert to tokenizer.json: train with model_type=unigram")
    backend = Backend(models.Unigram([(p.piece, p.score) for p in proto.pieces], unk_id=tokenizer.unk_id))
    steps = [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    if proto.normalizer_spec.precompiled_charsmap:
        steps.insert(0, normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    t = tokenizer
    special = {"pad": t.pad_id, "unk": t.unk_id, "bos": t.bos_id, "eos": t.eos_id, "decoder_start": t.bos_id}
    if t.mask_id is not None:
        special["mask"] = t.mask_id
    from tokenizers import AddedToken

    backend.add_special_tokens([AddedToken(t.id_to_piece(i), special=True) for i in sorted(set(special.values()))])
    return HFTokenizer.of(backend.to_str(), special)


def _token_id(config: dict[str, Any], keys: tuple[str, ...], lookup) -> int | None:
    for key in keys:
        token = config.get(key)
        if isinstance(token, dict):  # an AddedToken as saved by older versions
            token = token.get("content")
        if isinstance(token, str) and lookup(token) is not None:
            return lookup(token)
    return None


def read_tokenizers(folder: Path, model_config: dict[str, Any]) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers of a `save_pretrained` folder whose config.json is `model_config`:
    `tokenizer.json`, or Marian's source.spm / target.spm / vocab.json. The special ids come from
    tokenizer_config.json's tokens, and config.json's pad/bos/eos/decoder_start_token_id where it sets them."""
    folder = Path(folder)
    tok_config_file = folder / "tokenizer_config.json"
    tok_config = json.loads(tok_config_file.read_text()) if tok_config_file.is_file() else {}
    overrides = {
        name: model_config.get(f"{name}_token_id")
        for name in ("pad", "bos", "eos", "decoder_start")
        if isinstance(model_config.get(f"{name}_token_id"), int)
    }
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer as Backend

        text = (folder / "tokenizer.json").read_text()
        lookup = Backend.from_str(text).token_to_id
        special = {name: _token_id(tok_config, keys, lookup) for name, keys in TOKEN_KEYS.items()}
        if model_config.get("is_encoder_decoder"):  # the bos/eos of BART are its <s> and </s>, not cls/sep
            special["bos"] = _token_id(tok_config, ("bos_token",), lookup)
            special["eos"] = _token_id(tok_config, ("eos_token",), lookup)
        special.update(overrides)
        special.setdefault("decoder_start", special.get("bos"))
        if special["decoder_start"] is None:
            special["decoder_start"] = special.get("bos")
        tokenizer = HFTokenizer.of(text, special)
        return tokenizer, tokenizer
    if (folder / "source.spm").is_file() and (folder / "vocab.json").is_file():
        vocab = json.loads((folder / "vocab.json").read_text())
        special = {name: _token_id(tok_config, keys, vocab.get) for name, keys in TOKEN_KEYS.items()}
        special = {**special, "unk": special["unk"] if special["unk"] is not None else vocab.get("<unk>")}
        special.setdefault("eos", vocab.get("</s>"))
        special = {**special, "eos": vocab.get("</s>") if special["eos"] is None else special["eos"]}
        special = {**special, **overrides}
        special["bos"] = special.get("decoder_start", special["pad"])  # Marian has no bos: it starts with pad
        special.setdefault("decoder_start", special["bos"])
        src = MarianTokenizer.of((folder / "source.spm").read_bytes(), vocab, special, "source")
        target_file = folder / "target.spm"
        tgt = MarianTokenizer.of(target_file.read_bytes(), vocab, special, "target") if target_file.is_file() else src
        return src, tgt
    raise DataError(
        f"{folder} has no tokenizer this package reads: expected tokenizer.json, or Marian's source.spm, "
        f"target.spm and vocab.json"
    )
