"""format=hf for models of ours: a classifier in BERT's layout, and an encoder-decoder in our default layout (as
Pegasus), with our SentencePiece tokenizer are written as a folder that transformers loads (AutoTokenizer,
AutoModelForSequenceClassification / AutoModelForSeq2SeqLM) and reads as ours does; a layout the family cannot
express is refused in one line."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers.hf import CORPUS, SENTENCES

from transformer.config import ModelConfig
from transformer.data.batching import pad_sequences
from transformer.data.tokenizer import train_tokenizer
from transformer.errors import ConfigError
from transformer.hf.pretrained import permute_residual, residual_permutation, write_pretrained
from transformer.model import EncoderClassifier, EncoderDecoder

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


def ours_seq2seq(tokenizer, steps: int = 0, **switches) -> EncoderDecoder:
    """A tiny encoder-decoder in our default layout (pre-LN, final LayerNorms, sinusoidal positions, sqrt(D)-scaled
    shared embeddings, tied output), its LayerNorms and biases perturbed, then trained `steps` steps to copy
    SENTENCES' first pieces (so that its greedy outputs end with eos at various lengths, a few pieces off)."""
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", vocab_size=tokenizer.vocab_size, max_positions=64, dropout=0.0, **switches)
    model = EncoderDecoder(config)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                tensor.add_(torch.randn_like(tensor) * 0.1)
    ids = [row[:8] for row in tokenizer.encode(SENTENCES)]
    src = pad_sequences(ids, config.pad_id)
    tgt_in = pad_sequences([[config.start_id, *row] for row in ids], config.pad_id)
    tgt_out = pad_sequences([[*row, config.eos_id] for row in ids], config.pad_id)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend (0.1 s instead of seconds on a busy host)
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            model.loss(src, tgt_in, tgt_out).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def test_residual_permutation_leaves_the_logits_unchanged():
    """Reordering the residual features (what puts our sinusoids in Pegasus' order) is an identity on the
    outputs once the positional table is reordered alike: checked inside our own model."""
    config = ModelConfig.named("tiny", vocab_size=50, max_positions=32, activation="gelu")
    torch.manual_seed(0)
    model = EncoderDecoder(config).eval()
    halves = EncoderDecoder(replace(config, positional="sinusoidal_halves")).eval()
    halves.load_state_dict(permute_residual(model.state_dict(), residual_permutation(config.d_model)))
    src, tgt_in = torch.randint(4, 50, (3, 9)), torch.randint(4, 50, (3, 7))
    with torch.no_grad():
        torch.testing.assert_close(halves(src, tgt_in), model(src, tgt_in), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("activation", "norm_first", "steps", "model_type"),
    [("relu", True, 15, "pegasus"), ("gelu", True, 15, "pegasus"), ("relu", False, 60, "marian")],  # post-LN: slower
)  # fmt: skip
def test_our_seq2seq_exports_as_pegasus_or_marian(tmp_path, activation, norm_first, steps, model_type):
    """Our default seq2seq layout -> Pegasus, and with norm_first=false (post-LN, no final LayerNorms) -> Marian,
    whose sinusoids are Pegasus': AutoTokenizer reads text as ours does, teacher-forced logits on a
    padded batch equal ours, greedy generate() (with the exported generation_config: our decoder start, eos, pad
    and forced eos at the budget) equals our greedy search token for token, and init_from=hf: reads it back."""
    from transformer.decoding import DecodingConfig, generate
    from transformer.export.writer import check_pretrained
    from transformer.hf.pretrained import read_pretrained
    from transformer.training.init import load_weights

    tokenizer = train_tokenizer(CORPUS * 3, 110)
    model = ours_seq2seq(tokenizer, steps=steps, activation=activation, norm_first=norm_first)
    family = write_pretrained(tmp_path, model.config, model.state_dict(), "seq2seq", tokenizer, tokenizer, [])
    assert family.model_type == model_type
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = [*SENTENCES, "  two  spaces ", "Ünïcödé ﬁ ligature"]
    assert [auto(text)["input_ids"] for text in texts] == tokenizer.encode(texts)
    assert (auto.pad_token_id, auto.eos_token_id, auto.bos_token_id) == (0, 3, 2)
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert type(theirs).__name__ == family.architecture
    c = model.config
    src = pad_sequences(tokenizer.encode(SENTENCES), c.pad_id)
    mask = src.ne(c.pad_id).long()
    labels = pad_sequences([ids + [c.eos_id] for ids in tokenizer.encode(list(reversed(SENTENCES)))], c.pad_id)
    tgt_in = torch.cat([torch.full_like(labels[:, :1], c.start_id), labels[:, :-1]], dim=1)
    keep = labels.ne(c.pad_id)  # transformers' decoder attends to padding positions as tokens; compare real ones
    assert mask.eq(0).any() and keep.eq(0).any()
    with torch.no_grad():
        expected = theirs(input_ids=src, attention_mask=mask, decoder_input_ids=tgt_in).logits
        torch.testing.assert_close(model(src, tgt_in)[keep], expected[keep], atol=1e-4, rtol=0)
        MAX = 12
        generated = theirs.generate(input_ids=src, attention_mask=mask, num_beams=1, do_sample=False,
                                    max_new_tokens=MAX)  # fmt: skip
    decoding = DecodingConfig(1, max_len_a=0.0, max_len_b=MAX - 1)  # MAX tokens, the last forced to be eos
    got = [hyps[0][1] for hyps in generate(model, src, c.start_id, c.eos_id, decoding)]
    rows = [row[1:] for row in generated.tolist()]  # without the decoder start
    assert all(row[0] == c.start_id for row in generated.tolist())
    assert got == [row[: row.index(c.eos_id)] if c.eos_id in row else row for row in rows]
    assert len({len(row) for row in got}) > 1  # the outputs end at various lengths, before the budget
    assert check_pretrained(model, tmp_path, "seq2seq") <= 1e-4  # what export check=true runs
    pretrained = read_pretrained(f"hf:{tmp_path}")  # and back: it imports as ours in its sinusoid order
    back = EncoderDecoder(pretrained.model).eval()
    weights, unused = pretrained.weights(back.config)
    report = load_weights(back, weights, str(tmp_path), unused)
    assert not report.new and not report.mismatched and not report.unused, report.summary()
    with torch.no_grad():
        torch.testing.assert_close(back(src, tgt_in)[keep], expected[keep], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("switches", "message"),
    [
        (dict(positional="learned"), "positional=learned"),
        (dict(layer_norm_eps=1e-6), "layer_norm_eps=1e-06"),
        (dict(decoder_scale_embeddings=False), "decoder_scale_embeddings"),
        (dict(share_embeddings=False, tie_output=False), "separate embeddings"),
    ],
)
def test_a_seq2seq_layout_pegasus_cannot_express_is_one_line(tmp_path, switches, message):
    tokenizer = train_tokenizer(CORPUS * 3, 110)
    model = ours_seq2seq(tokenizer, **switches)
    with pytest.raises(ConfigError, match=f"writes pegasus models.*{message}") as info:
        write_pretrained(tmp_path, model.config, model.state_dict(), "seq2seq", tokenizer, tokenizer, [])
    assert "\n" not in str(info.value)


def test_separate_source_and_target_tokenizers_are_one_line(tmp_path):
    source, target = train_tokenizer(CORPUS * 3, 110), train_tokenizer(list(reversed(CORPUS)) * 2, 100)
    model = ours_seq2seq(source)
    with pytest.raises(ConfigError, match="one shared tokenizer") as info:
        write_pretrained(tmp_path, model.config, model.state_dict(), "seq2seq", source, target, [])
    assert "\n" not in str(info.value)
