"""Ensembles (transformer/ensemble.py): the classifier's output is the log of its members' mean probabilities,
beam search follows the mean next-token distribution, and an ensemble of copies of one model decodes exactly as
that model; evaluate.py takes ckpt=[...] and refuses members that do not share a tokenizer."""

from __future__ import annotations

import pytest
import torch

from transformer.config import ModelConfig
from transformer.decoding import beam_search, greedy_search
from transformer.ensemble import ClassifierEnsemble, Seq2SeqEnsemble, ensemble
from transformer.model import EncoderClassifier, EncoderDecoder


def config(**changes) -> ModelConfig:
    return ModelConfig.named("tiny", vocab_size=40, dropout=0.0, max_positions=64, **changes)


def test_classifier_ensemble_averages_probabilities():
    torch.manual_seed(0)
    members = [EncoderClassifier(config()).eval() for _ in range(3)]
    src = torch.randint(4, 40, (5, 7))
    with torch.no_grad():
        mean = torch.stack([m(src).float().softmax(-1) for m in members]).mean(0)
        out = ClassifierEnsemble(members)(src)
    torch.testing.assert_close(out.exp(), mean)
    assert ensemble(members[:1]) is members[0]


def test_seq2seq_ensemble_follows_the_mean_distribution():
    torch.manual_seed(0)
    members = [EncoderDecoder(config()).eval() for _ in range(2)]
    members.append(EncoderDecoder(config(d_model=48, n_heads=4, n_decoder_layers=1)).eval())  # other sizes mix too
    joint = Seq2SeqEnsemble(members)
    src, tgt_in = torch.randint(4, 40, (3, 6)), torch.randint(4, 40, (3, 5))
    with torch.no_grad():
        mean = torch.stack([m(src, tgt_in).float().softmax(-1) for m in members]).mean(0)
        torch.testing.assert_close(joint(src, tgt_in).exp(), mean, rtol=1e-5, atol=1e-6)
        # incremental decoding with the members' caches gives the teacher-forced distribution, step by step
        memory, pad_mask = joint.encode(src)
        caches = joint.new_caches()
        steps = [joint.decode(tgt_in[:, t : t + 1], memory, pad_mask, caches, src) for t in range(tgt_in.size(1))]
        torch.testing.assert_close(torch.cat(steps, 1).exp(), mean, rtol=1e-4, atol=1e-6)
    hyps = beam_search(joint, src, bos_id=2, eos_id=3, beam_size=3, max_len_a=0.0, max_len_b=5)
    assert len(hyps) == 3


def test_ensemble_of_copies_decodes_like_the_model():
    torch.manual_seed(0)
    model = EncoderDecoder(config()).eval()
    copies = Seq2SeqEnsemble([model, model])
    src = torch.randint(4, 40, (4, 8))
    for search in (lambda m: greedy_search(m, src, 2, 3, 0.0, 6), lambda m: beam_search(m, src, 2, 3, 4, 1.0, 0.0, 6)):
        assert search(copies) == search(model)


def test_ensemble_needs_one_kind_of_model():
    with pytest.raises(ValueError, match="one kind"):
        ensemble([EncoderClassifier(config()), EncoderDecoder(config())])
