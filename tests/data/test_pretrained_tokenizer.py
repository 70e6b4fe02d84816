"""Pretrained tokenizers (data/pretrained_tokenizer.py) give AutoTokenizer's ids, survive their bytes, and decode."""

from __future__ import annotations

import json
import pickle

import pytest
from helpers.hf import BERT_SPECIAL, BPE_SPECIAL, SENTENCES, byte_bpe, save_marian_tokenizer, save_tokenizer, wordpiece

from transformer.data.pretrained_tokenizer import HFTokenizer, MarianTokenizer, read_tokenizers
from transformer.data.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")


def folder_of(tmp_path, kind):
    if kind == "wordpiece":
        save_tokenizer(wordpiece(), tmp_path, **BERT_SPECIAL)
        return tmp_path, {"model_type": "bert", "pad_token_id": 0}
    if kind == "bpe":
        save_tokenizer(byte_bpe(), tmp_path, **BPE_SPECIAL)
        return tmp_path, {"model_type": "roberta", "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    vocab = save_marian_tokenizer(tmp_path)
    return tmp_path, {"model_type": "marian", "pad_token_id": vocab["<pad>"], "decoder_start_token_id": vocab["<pad>"]}


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "marian"])
def test_same_ids_as_auto_tokenizer(tmp_path, kind):
    folder, config = folder_of(tmp_path, kind)
    src, tgt = read_tokenizers(folder, config)
    reference = transformers.AutoTokenizer.from_pretrained(folder)
    assert src.encode(SENTENCES) == [reference(s)["input_ids"] for s in SENTENCES]
    if kind == "marian":
        assert isinstance(src, MarianTokenizer) and src.side == "source" and tgt.side == "target"
        expected = [reference(text_target=s)["input_ids"] for s in SENTENCES]
        assert [ids + [tgt.eos_id] for ids in tgt.encode_target(SENTENCES)] == expected
        assert tgt.decoder_start_id == tgt.pad_id == config["pad_token_id"]
    else:
        assert isinstance(src, HFTokenizer) and src is tgt
    assert src.pad_id == reference.pad_token_id
    assert src.eos_id == reference.convert_tokens_to_ids("[SEP]" if kind == "wordpiece" else "</s>")
    for ids, sentence in zip(src.encode(SENTENCES), SENTENCES, strict=True):
        assert src.decode(ids) == reference.decode(ids, skip_special_tokens=True)
        if kind == "bpe":  # byte-level BPE is lossless
            assert src.decode(ids) == sentence


@pytest.mark.parametrize("kind", ["wordpiece", "marian"])
def test_stored_as_bytes_and_pickled(tmp_path, kind):
    folder, config = folder_of(tmp_path, kind)
    src, _ = read_tokenizers(folder, config)
    data = src.to_bytes()
    assert data.startswith(b"{") and json.loads(data)["kind"] == src.kind
    restored = Tokenizer.from_bytes(data)
    assert type(restored) is type(src) and restored == src
    assert restored.encode(SENTENCES) == src.encode(SENTENCES)
    assert pickle.loads(pickle.dumps(src)) == src


def test_folder_without_tokenizer_is_one_line(tmp_path):
    from transformer.data.config import DataError

    with pytest.raises(DataError, match="no tokenizer this package reads") as info:
        read_tokenizers(tmp_path, {"model_type": "bert"})
    assert "\n" not in str(info.value)
