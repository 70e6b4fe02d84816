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


def shift_right(labels, start_id, pad_id):
    tgt_in = torch.full_like(labels, pad_id)
    tgt_in[:, 0] = start_id
    tgt_in[:, 1:] = labels[:, :-1]
    return tgt_in


@pytest.mark.parametrize("model_type", ["bart", "marian"])
def test_seq2seq_teacher_forced_logits_equal_transformers(tmp_path, model_type):
    reference = save_seq2seq(tmp_path, model_type)
    pretrained, ours = imported(tmp_path, EncoderDecoder)
    src, mask = padded_batch(pretrained.src_tokenizer)
    tgt = pretrained.tgt_tokenizer
    targets = [ids + [tgt.eos_id] for ids in tgt.encode_target(list(reversed(SENTENCES)))]
    labels = pad_sequences(targets, tgt.pad_id)
    tgt_in = shift_right(labels, ours.config.start_id, tgt.pad_id)
    with torch.no_grad():
        expected = reference(input_ids=src, attention_mask=mask, decoder_input_ids=tgt_in).logits
        got = ours(src, tgt_in)
    keep = labels.ne(tgt.pad_id)  # HF's decoder attends to padding positions as tokens; compare real ones
    torch.testing.assert_close(got[keep], expected[keep], atol=ATOL, rtol=0)


def strip(row: list[int], eos_id: int) -> list[int]:
    row = row[1:]  # the decoder start
    return row[: row.index(eos_id)] if eos_id in row else row


def trained_to_copy(reference, folder, pretrained, steps: int):
    """`reference` trained `steps` Adam steps (one thread) to output each of SENTENCES' first 8 target pieces then
    eos, saved into `folder` again and read back from it (what the folder holds: training unties the encoder's and
    decoder's embeddings in memory, and save_pretrained keeps one of them)."""
    src, mask = padded_batch(pretrained.src_tokenizer)
    tgt = pretrained.tgt_tokenizer
    labels = pad_sequences([ids[:8] + [tgt.eos_id] for ids in tgt.encode_target(SENTENCES)], -100)  # -100: ignored
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend
    try:
        reference.train()  # dropout is 0
        for _ in range(steps):
            optimizer.zero_grad()
            reference(input_ids=src, attention_mask=mask, labels=labels).loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    reference.save_pretrained(folder)
    return type(reference).from_pretrained(folder).eval()


@pytest.mark.parametrize(
    ("model_type", "beam_size", "steps"), [("bart", 1, 0), ("marian", 1, 0), ("bart", 5, 0), ("marian", 5, 100)]
)
def test_search_equals_transformers_generate(tmp_path, model_type, beam_size, steps):
    """Greedy and beam-5 outputs equal generate()'s token for token, with HF set to our search: a fixed budget
    of MAX new tokens whose last is forced to be eos (our max_len_a=0, max_len_b=MAX-1 and its forced eos: HF's
    max_new_tokens=MAX with forced_eos_token_id), early_stopping=True (a sentence is done once it has K finished
    hypotheses), length_penalty=1 (score / length, eos counted), no forced bos, no n-gram blocking, and for Marian
    the decoder start (pad) banned, as our beam search bans its start token (HF: bad_words_ids=[[pad]]).

    One difference remains: at the budget HF's forced eos scores log 1 = 0, ours scores eos at its model
    log-probability, so beam hypotheses cut by the budget may rank differently (greedy search never compares
    them). The random models here never end before the budget, and random Marian's beam-5 outputs do rank
    differently; so Marian beam-5 is compared on a Marian trained `steps` steps to copy its input, whose K
    finished hypotheses of every sentence all end with eos before the budget (checked), so that the forced eos
    never scores one."""
    from transformer.decoding import DecodingConfig, generate

    reference = save_seq2seq(tmp_path, model_type, seed=1, init_std=0.15)
    if steps:
        reference = trained_to_copy(reference, tmp_path, read_pretrained(f"hf:{tmp_path}"), steps)
    pretrained, ours = imported(tmp_path, EncoderDecoder)
    src, mask = padded_batch(pretrained.src_tokenizer)
    c = ours.config
    MAX = 12
    banned = {"bad_words_ids": [[c.start_id]]} if (beam_size > 1 and c.start_id != c.eos_id) else {}
    with torch.no_grad():
        expected = reference.generate(
            input_ids=src, attention_mask=mask, num_beams=beam_size, do_sample=False, max_new_tokens=MAX,
            min_length=0, early_stopping=True, length_penalty=1.0, no_repeat_ngram_size=0, forced_bos_token_id=None,
            forced_eos_token_id=c.eos_id, decoder_start_token_id=c.start_id, eos_token_id=c.eos_id,
            pad_token_id=c.pad_id, num_return_sequences=1, **banned,
        )  # fmt: skip
    decoding = DecodingConfig(beam_size=beam_size, max_len_a=0.0, max_len_b=MAX - 1, length_penalty=1.0,
                              nbest=beam_size)  # fmt: skip
    hypotheses = generate(ours, src, c.start_id, c.eos_id, decoding)
    got = [hyps[0][1] for hyps in hypotheses]
    assert got == [strip(row, c.eos_id) for row in expected.tolist()]
    assert len({tuple(row) for row in got}) > 1  # the outputs depend on the inputs
    if steps:  # every finished hypothesis ended with eos before the budget: the forced eos never scored one
        assert all(len(tokens) < MAX - 1 for hyps in hypotheses for _, tokens in hyps)
