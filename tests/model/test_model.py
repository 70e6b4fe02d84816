"""Models: padding invariance, cached decoding, beam search, parameter counts (Table 3), config errors."""

import pytest
import torch

from transformer import EncoderClassifier, EncoderDecoder, ModelConfig, beam_search, greedy_search
from transformer.model import masked_mean

PAD, BOS, EOS = 0, 2, 3


def tiny(**overrides) -> ModelConfig:
    return ModelConfig.named("tiny", vocab_size=50, dropout=0.0, **overrides)


def random_batch(lengths, vocab=50, seed=0):
    """Right-padded (B, max(lengths)) ids avoiding the special ids 0-3, and the unpadded rows."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(4, vocab, (n,), generator=g) for n in lengths]
    batch = torch.full((len(rows), max(lengths)), PAD)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = row
    return batch, rows


VARIANTS = [
    {},
    {"norm_first": False},
    {"positional": "learned"},
    {"backend": "explicit"},
    {"share_embeddings": False, "tie_output": False, "target_vocab_size": 60},
    {"copy_attention": True},
]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_encoder_decoder_is_invariant_to_padding(overrides):
    torch.manual_seed(0)
    model = EncoderDecoder(tiny(**overrides)).eval()
    src, src_rows = random_batch([6, 3, 4])
    tgt, tgt_rows = random_batch([5, 2, 7], seed=1)
    logits = model(src, tgt)  # (B, T, V)
    for i, (s, t) in enumerate(zip(src_rows, tgt_rows, strict=True)):
        alone = model(s[None], t[None])[0]
        torch.testing.assert_close(logits[i, : len(t)], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_classifier_is_invariant_to_padding(pooling):
    torch.manual_seed(0)
    model = EncoderClassifier(tiny(pooling=pooling, num_classes=3)).eval()
    src, rows = random_batch([6, 2, 4])
    logits = model(src)
    assert logits.shape == (3, 3)
    for i, row in enumerate(rows):
        torch.testing.assert_close(logits[i], model(row[None])[0], rtol=1e-5, atol=1e-5)


def test_masked_mean_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[False, False, True]])).item() == 2.0


@pytest.mark.parametrize("overrides", [{}, {"norm_first": False, "positional": "learned"}, {"copy_attention": True}])
def test_cached_incremental_decoding_equals_full_forward(overrides):
    torch.manual_seed(0)
    model = EncoderDecoder(tiny(**overrides)).eval()
    src, _ = random_batch([6, 3, 4])
    tgt, _ = random_batch([7, 7, 7], seed=2)
    memory, pad_mask = model.encode(src)
    full = model.decode(tgt, memory, pad_mask, src=src)  # (B, T, V)
    caches = model.new_caches()
    steps = [model.decode(tgt[:, t : t + 1], memory, pad_mask, caches, src) for t in range(tgt.size(1))]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_pointer_generator_mixes_two_distributions():
    torch.manual_seed(0)
    model = EncoderDecoder(tiny(copy_attention=True)).eval()
    src, _ = random_batch([6, 3])
    tgt, _ = random_batch([4, 4], seed=1)
    with torch.no_grad():
        logp = model(src, tgt)  # (B, T, V) log-probabilities
        torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 4))
        torch.testing.assert_close(logp.log_softmax(-1), logp)  # usable as logits by losses and search
        memory, pad_mask = model.encode(src)
        vocab_logp = model.project(model.decoder(tgt, memory, pad_mask)).log_softmax(-1)
        model.copy.gate.bias.fill_(30.0)  # p_gen = 1: the decoder's own distribution
        torch.testing.assert_close(model(src, tgt), vocab_logp, rtol=1e-4, atol=1e-4)
        model.copy.gate.bias.fill_(-30.0)  # p_gen = 0: all mass on the source's tokens, none on its padding
        probs = model(src, tgt).exp()
    for i in range(2):
        on_source = torch.zeros(50, dtype=torch.bool)
        on_source[src[i][src[i].ne(PAD)]] = True
        torch.testing.assert_close(probs[i][:, on_source].sum(-1), torch.ones(4))
    with pytest.raises(ValueError, match="pass src to decode"):
        model.decode(tgt, memory, pad_mask)


def trained_copy_model(**overrides):
    """A tiny model with peaked distributions, so decoding produces varied lengths and early EOS."""
    torch.manual_seed(0)
    model = EncoderDecoder(tiny(**overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


@pytest.mark.parametrize("copy_attention", [False, True])
def test_greedy_matches_step_by_step_argmax(copy_attention):
    model = trained_copy_model(copy_attention=copy_attention)
    src, rows = random_batch([6, 3, 5, 1])
    hyps = greedy_search(model, src, BOS, EOS, max_len_a=1.0, max_len_b=3)
    for row, hyp in zip(rows, hyps, strict=True):
        memory, pad = model.encode(row[None])
        tokens = [BOS]
        for _ in range(len(row) + 3):
            nxt = int(model.decode(torch.tensor([tokens]), memory, pad, src=row[None])[0, -1].argmax())
            if nxt == EOS:
                break
            tokens.append(nxt)
        assert hyp == tokens[1:]
        assert len(hyp) <= len(row) + 3


@pytest.mark.parametrize("copy_attention", [False, True])
def test_beam_one_equals_greedy_and_beams_score_higher(copy_attention):
    model = trained_copy_model(copy_attention=copy_attention)
    src, _ = random_batch([6, 3, 5, 1, 8], seed=3)
    greedy = greedy_search(model, src, BOS, EOS, max_len_a=1.0, max_len_b=4)
    assert beam_search(model, src, BOS, EOS, beam_size=1, max_len_a=1.0, max_len_b=4) == greedy
    nbest = beam_search(model, src, BOS, EOS, beam_size=4, length_penalty=0.0, nbest=4, max_len_a=1.0, max_len_b=4)
    for i, hyps in enumerate(nbest):
        assert len(hyps) == 4 and len({tuple(h) for h in hyps}) == 4
        # the best beam is at least as likely as the greedy hypothesis (length_penalty 0: raw log-prob)
        assert sequence_logprob(model, src[i], hyps[0]) >= sequence_logprob(model, src[i], greedy[i]) - 1e-4


def sequence_logprob(model, src_row, hyp):
    src = src_row[src_row.ne(PAD)][None]
    tgt_in = torch.tensor([[BOS, *hyp]])
    tgt_out = torch.tensor([[*hyp, EOS]])
    with torch.no_grad():
        logp = model(src, tgt_in).log_softmax(-1)
    return logp.gather(-1, tgt_out[..., None]).sum().item()


def test_beam_search_respects_max_length_and_batch_independence():
    model = trained_copy_model()
    src, rows = random_batch([6, 2, 4], seed=4)
    batched = beam_search(model, src, BOS, EOS, beam_size=3, max_len_a=0.5, max_len_b=1)
    for row, hyp in zip(rows, batched, strict=True):
        assert len(hyp) <= int(0.5 * len(row) + 1)
        assert beam_search(model, row[None], BOS, EOS, beam_size=3, max_len_a=0.5, max_len_b=1)[0] == hyp


def closed_form_parameters(c: ModelConfig) -> int:
    """Shared source/target/output embedding, pre-LN (one final LayerNorm per stack), biases everywhere."""
    D, F, V = c.d_model, c.d_ff, c.vocab_size
    attention = 4 * (D * D + D)
    ffn = D * F + F + F * D + D
    norm = 2 * D
    encoder = c.n_encoder_layers * (attention + ffn + 2 * norm) + norm
    decoder = c.n_decoder_layers * (2 * attention + ffn + 3 * norm) + norm
    return V * D + encoder + decoder


@pytest.mark.parametrize("size,paper", [("base", 65e6), ("big", 213e6)])
def test_parameter_counts_match_table_3(size, paper):
    config = ModelConfig.named(size, vocab_size=37000)
    with torch.device("meta"):
        model = EncoderDecoder(config)
    count = sum(p.numel() for p in model.parameters())
    assert count == closed_form_parameters(config)
    assert abs(count - paper) / paper < 0.04
    expected = {"base": 63_084_544, "big": 214_249_472}[size]  # ~63.1M and ~214.2M
    assert count == expected


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"d_model": 30, "n_heads": 4}, "not divisible by n_heads"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"dropout": 1.5}, "dropout must be in"),
        ({"positional": "rotary"}, "positional='rotary' is not one of"),
        ({"target_vocab_size": 70}, "share_embeddings=True needs one vocabulary"),
        ({"target_vocab_size": 70, "share_embeddings": False, "copy_attention": True}, "copy_attention=True"),
        ({"pad_id": 99}, "pad_id=99 is outside the vocabulary"),
        ({"n_encoder_layers": -1}, "n_encoder_layers must be a non-negative integer"),
    ],
)
def test_bad_sizes_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{"vocab_size": 50, **overrides})


def test_named_sizes_and_unknown_keys():
    assert ModelConfig.named("base").d_model == 512 and ModelConfig.named("big").n_heads == 16
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        ModelConfig.named("huge")
    with pytest.raises(ValueError, match=r"unknown model config keys \['d_modle'\]"):
        ModelConfig.from_dict({"d_modle": 5})


def test_too_long_input_and_bad_decoding_arguments():
    model = EncoderDecoder(tiny(max_positions=8)).eval()
    with pytest.raises(ValueError, match="exceeds max_positions=8"):
        model(torch.full((1, 9), 5), torch.full((1, 2), 5))
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        beam_search(model, torch.full((1, 3), 5), BOS, EOS, beam_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        greedy_search(model, torch.zeros(1, 0, dtype=torch.long), BOS, EOS)
    with pytest.raises(TypeError, match="EncoderDecoder"):
        greedy_search(EncoderClassifier(tiny()), torch.full((1, 3), 5), BOS, EOS)


@pytest.mark.parametrize("copy_attention", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_equals_cross_entropy_of_the_output(copy_attention, smoothing):
    torch.manual_seed(0)
    model = EncoderDecoder(tiny(copy_attention=copy_attention)).eval()
    src, _ = random_batch([6, 3, 5], vocab=9)  # few distinct ids: sources repeat tokens, targets hit them
    tgt, _ = random_batch([4, 2, 5], vocab=12, seed=1)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    reference = torch.nn.functional.cross_entropy(
        model(src, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=PAD, label_smoothing=smoothing
    )
    loss = model.loss(src, tgt_in, tgt_out, smoothing, ignore_index=PAD)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    summed = model.loss(src, tgt_in, tgt_out, smoothing, ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(summed, reference * tgt_out.ne(PAD).sum(), rtol=1e-5, atol=1e-4)
    loss.backward()
    if copy_attention:
        assert model.copy.gate.weight.grad.abs().sum() > 0


def test_min_len_blocks_early_eos_within_the_budget():
    model = trained_copy_model()
    src, rows = random_batch([6, 3, 5, 1, 8], seed=3)
    free = greedy_search(model, src, BOS, EOS, max_len_a=1.0, max_len_b=4)
    assert min(len(h) for h in free) < 4  # the unconstrained model does stop early
    for hyps in (
        greedy_search(model, src, BOS, EOS, max_len_a=1.0, max_len_b=4, min_len=4),
        beam_search(model, src, BOS, EOS, beam_size=3, max_len_a=1.0, max_len_b=4, min_len=4),
    ):
        assert all(len(h) >= 4 and EOS not in h for h in hyps)
    # the budget wins over min_len: a 1-token budget still ends after 1 token
    short = beam_search(model, src, BOS, EOS, beam_size=3, max_len_a=0.0, max_len_b=1, min_len=4)
    assert all(len(h) == 1 for h in short)


@pytest.mark.parametrize("kind", ["seq2seq", "classifier"])
def test_activation_checkpointing_gives_the_same_gradients(kind):
    """Recomputed blocks redraw the same dropout masks: gradients equal those of the plain model."""
    config = ModelConfig.named("tiny", vocab_size=50, dropout=0.3, attention_dropout=0.2, activation_dropout=0.1)
    build = EncoderDecoder if kind == "seq2seq" else EncoderClassifier
    plain = build(config).train()
    checkpointed = build(ModelConfig.named("tiny", **{**config.to_dict(), "activation_checkpointing": True}))
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.train()
    src, _ = random_batch([6, 3, 5])
    tgt, _ = random_batch([4, 2, 5], seed=1)
    grads = []
    for model in (plain, checkpointed):
        torch.manual_seed(7)
        if kind == "seq2seq":
            loss = model.loss(src, tgt[:, :-1], tgt[:, 1:], 0.1, ignore_index=PAD)
        else:
            loss = model(src).logsumexp(-1).mean()
        loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)
    torch.manual_seed(7)
    without = plain.loss(src, tgt[:, :-1], tgt[:, 1:], 0.1) if kind == "seq2seq" else plain(src).sum()
    torch.manual_seed(8)
    other = plain.loss(src, tgt[:, :-1], tgt[:, 1:], 0.1) if kind == "seq2seq" else plain(src).sum()
    assert not torch.equal(without, other)  # dropout is active, so equal gradients are not trivial
