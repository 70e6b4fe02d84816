"""The fused projection + cross-entropy (transformer/loss.py, model.fused_loss) against F.linear + F.cross_entropy:
the same loss and the same gradients, with label smoothing, padding, tied or separate output weights, by chunks."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import transformer.loss
from transformer import EncoderDecoder, ModelConfig
from transformer.loss import linear_cross_entropy


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 rows, so that every test crosses chunk boundaries (a ragged last chunk too)."""
    monkeypatch.setattr(transformer.loss, "MIN_ROWS", 7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_cross_entropy_of_the_logits(small_chunks, smoothing, reduction):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 11, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(40, 16, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 40, (3, 11), generator=g)
    target[0, 8:] = target[2, 3:] = 0  # padding, the ignored index
    expected = F.cross_entropy(
        F.linear(h, weight).flatten(0, 1), target.flatten(), ignore_index=0, label_smoothing=smoothing,
        reduction=reduction,
    )  # fmt: skip
    loss = linear_cross_entropy(h, weight, target, smoothing, ignore_index=0, reduction=reduction)
    torch.testing.assert_close(loss, expected)
    got, want = torch.autograd.grad(loss * 3, (h, weight)), torch.autograd.grad(expected * 3, (h, weight))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)  # * 3: the incoming gradient scales the stored ones


def test_without_gradients_gives_the_loss_alone():
    h, weight = torch.randn(5, 8), torch.randn(20, 8)
    target = torch.tensor([1, 2, 0, 4, 19])
    with torch.no_grad():
        loss = linear_cross_entropy(h, weight, target, 0.1, ignore_index=0)
    torch.testing.assert_close(loss, F.cross_entropy(h @ weight.T, target, ignore_index=0, label_smoothing=0.1))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"share_embeddings": False, "tie_output": False, "target_vocab_size": 60}, {"output_bias": True}],
    ids=["tied", "separate", "output-bias"],
)
def test_the_models_loss_and_gradients_match_the_unfused_loss(small_chunks, overrides):
    """Tied output weights: the gradient of the embedding sums its use as input and as output projection. The
    output bias (BART's and Marian's final_logits_bias, imported) is a constant buffer added to the logits."""
    config = ModelConfig.named("tiny", vocab_size=50, dropout=0.0, **overrides)
    torch.manual_seed(0)
    fused = EncoderDecoder(replace(config, fused_loss=True))
    unfused = EncoderDecoder(replace(config, fused_loss=False))
    if config.output_bias:
        fused.output_bias.normal_()
    unfused.load_state_dict(fused.state_dict())
    src = torch.randint(4, 50, (4, 9))
    tgt = torch.randint(4, 50, (4, 8))
    tgt[1, 5:] = tgt[3, 2:] = 0
    tgt_in = torch.cat([torch.full((4, 1), 2), tgt[:, :-1]], 1)
    losses = [model.loss(src, tgt_in, tgt, 0.1, 0, "sum") for model in (fused, unfused)]
    torch.testing.assert_close(losses[0], losses[1])
    for loss in losses:
        loss.backward()
    for (name, a), b in zip(fused.named_parameters(), unfused.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_under_bf16_autocast_it_matches_within_bf16_rounding():
    """The projection runs in bf16 as F.linear's would; the softmax and the loss in float32."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(64, 32, generator=g, requires_grad=True)
    weight = (torch.randn(500, 32, generator=g) * 0.2).requires_grad_()
    target = torch.randint(0, 500, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(h, weight, target, 0.1, ignore_index=0)
        expected = F.cross_entropy(F.linear(h, weight).float(), target, ignore_index=0, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)  # the same bf16 logits
    grads = torch.autograd.grad(loss, (h, weight)), torch.autograd.grad(expected, (h, weight))
    for got, want in zip(*grads, strict=True):
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0.02, atol=0.01 * want.abs().max().item())


def test_bad_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(torch.randn(2, 4), torch.randn(6, 4), torch.tensor([1, 2]), reduction="none")
