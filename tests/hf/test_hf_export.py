"""format=hf for models of ours: a classifier in BERT's layout with our SentencePiece tokenizer is written as a
folder that transformers loads (AutoTokenizer and AutoModelForSequenceClassification) and reads as ours does; a
layout the family cannot express is refused in one line."""

from __future__ import annotations

import pytest
import torch
from helpers.hf import CORPUS, SENTENCES

from transformer.config import ModelConfig
from transformer.data.batching import pad_sequences
from transformer.data.tokenizer import train_tokenizer
from transformer.errors import ConfigError
from transformer.hf.pretrained import write_pretrained
from transformer.model import EncoderClassifier

transformers = pytest.importorskip("transformers")

BERT_LAYOUT = dict(
    norm_first=False, pooling="pooler", scale_embeddings=False, positional="learned", embed_norm=True,
    activation="gelu", layer_norm_eps=1e-12,
)  # fmt: skip


def ours(tokenizer, **switches) -> EncoderClassifier:
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", vocab_size=tokenizer.vocab_size, max_positions=64, num_classes=3, **switches)
    model = EncoderClassifier(config).eval()
    with torch.no_grad():  # LayerNorms and biases away from their initial ones and zeros
        for name, tensor in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return model


@pytest.mark.parametrize("token_types", [0, 2])
def test_our_classifier_in_bert_layout_round_trips(tmp_path, token_types):
    tokenizer = train_tokenizer(CORPUS * 3, 110)
    model = ours(tokenizer, token_types=token_types, **BERT_LAYOUT)
    family = write_pretrained(tmp_path, model.config, model.state_dict(), "classification", tokenizer, tokenizer,
                              ["neg", "neu", "pos"])  # fmt: skip
    assert family.model_type == "bert"
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = [*SENTENCES, "  two  spaces ", "Ünïcödé ﬁ ligature"]
    assert [auto(text)["input_ids"] for text in texts] == tokenizer.encode(texts)  # reads text as ours does
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert theirs.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    src = pad_sequences(tokenizer.encode(SENTENCES), tokenizer.pad_id)
    with torch.no_grad():
        torch.testing.assert_close(model(src), theirs(input_ids=src, attention_mask=src.ne(0).long()).logits,
                                   atol=1e-4, rtol=0)  # fmt: skip


def test_a_layout_the_family_cannot_express_is_one_line(tmp_path):
    tokenizer = train_tokenizer(CORPUS * 3, 110)
    model = ours(tokenizer)  # our defaults: pre-LN, mean pooling, sinusoidal positions
    with pytest.raises(ConfigError, match="norm_first=true.*pooling=mean") as info:
        write_pretrained(tmp_path, model.config, model.state_dict(), "classification", tokenizer, tokenizer, [])
    assert "\n" not in str(info.value)
