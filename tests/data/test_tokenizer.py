import pickle
import random

import pytest
import torch

from transformer.data import DataError, Tokenizer, train_tokenizer

TEXTS = [
    "the cat sees a small dog near the river",
    "Zwei junge Männer gehen über die Straße.",
    "big red house, green tree; music & film!",
]
_rng = random.Random(0)
_WORDS = " ".join(TEXTS).split() + ["".join(_rng.choices("abcdefghiklmnoprstuwäöü", k=6)) for _ in range(100)]
TEXTS += [" ".join(_rng.choices(_WORDS, k=8)) for _ in range(300)]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tokenizer(request) -> Tokenizer:
    return train_tokenizer(TEXTS, vocab_size=80, model_type=request.param)


def test_special_ids_are_fixed(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    assert [tokenizer.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert tokenizer.vocab_size == 80


def test_round_trip(tokenizer):
    texts = ["the cat sees a small dog", "Männer gehen über die Straße.", "music & film!"]
    ids = tokenizer.encode(texts)
    assert len(ids) == 3 and all(isinstance(i, int) for row in ids for i in row)
    assert all(min(row) > 3 for row in ids)  # no specials from encode: the collate functions add bos/eos
    assert [tokenizer.decode(row) for row in ids] == texts


def test_decode_strips_specials_and_stops_at_eos(tokenizer):
    ids = tokenizer.encode(["the cat"])[0]
    padded = torch.tensor([2, *ids, 3, 0, 0])
    assert tokenizer.decode(padded) == "the cat"
    assert tokenizer.decode([*ids, 3, *ids]) == "the cat"  # what follows eos is generation garbage
    assert [tokenizer.decode(row) for row in torch.stack([padded, padded])] == ["the cat", "the cat"]


def test_unknown_characters_map_to_unk(tokenizer):
    assert tokenizer.unk_id in tokenizer.encode(["猫"])[0]


def test_bytes_and_pickle_round_trip(tokenizer, tmp_path):
    data = tokenizer.to_bytes()
    restored = Tokenizer.from_bytes(data)
    assert restored == tokenizer and restored.encode(TEXTS[:3]) == tokenizer.encode(TEXTS[:3])
    assert pickle.loads(pickle.dumps(tokenizer)).encode(TEXTS[:3]) == tokenizer.encode(TEXTS[:3])
    tokenizer.save(tmp_path / "spm.model")
    assert Tokenizer.load(tmp_path / "spm.model") == tokenizer


def test_vocab_too_large_names_the_setting_and_a_size_that_fits():
    with pytest.raises(DataError, match=r"^my\.vocab_size=5000 is too large .* at most \d+$") as error:
        train_tokenizer(TEXTS, vocab_size=5000, setting="my.vocab_size")
    limit = int(str(error.value).rsplit(" ", 1)[1])
    assert train_tokenizer(TEXTS, vocab_size=min(limit, 80)).vocab_size == min(limit, 80)


def test_training_is_deterministic():
    a = train_tokenizer(TEXTS, vocab_size=60)
    b = train_tokenizer(TEXTS, vocab_size=60)
    assert a.to_bytes() == b.to_bytes()
