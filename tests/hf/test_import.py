"""init_from=hf: parity, fp32: our model built from a pretrained folder computes what transformers computes.

Every model is built by transformers from a small random config (LayerNorms and biases perturbed, so a
misplaced one shows) and saved with save_pretrained into a temporary folder; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from helpers.hf import SENTENCES, save_classifier, save_seq2seq
from transformer.data.batching import pad_sequences
from transformer.hf.pretrained import read_pretrained
from transformer.model import EncoderClassifier, EncoderDecoder
from transformer.training.init import load_weights

ATOL = 1e-4


def imported(folder, cls):
    pretrained = read_pretrained(f"hf:{folder}")
    model = cls(pretrained.model)
    weights, unused = pretrained.weights(model.config)
    report = load_weights(model, weights, str(folder), unused)
    assert not report.new and not report.mismatched and not report.unused, report.summary()
    return pretrained, model.eval()


def padded_batch(tokenizer, texts=SENTENCES):
    ids = tokenizer.encode(texts)
    src = pad_sequences(ids, tokenizer.pad_id)
    return src, src.ne(tokenizer.pad_id).long()


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_classifier_logits_equal_transformers(tmp_path, model_type):
    reference = save_classifier(tmp_path, model_type)
    pretrained, ours = imported(tmp_path, EncoderClassifier)
    src, mask = padded_batch(pretrained.src_tokenizer)
    assert mask.eq(0).any()  # the batch has padding
    with torch.no_grad():
        expected = reference(input_ids=src, attention_mask=mask).logits
        got = ours(src)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
