"""Model FLOPs (transformer/flops.py) against PyTorch's own FLOP counter on a real forward + backward pass."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from transformer import EncoderClassifier, EncoderDecoder, ModelConfig
from transformer.flops import training_flops
from transformer.model import MaskedLM


@pytest.mark.parametrize("kind", ["seq2seq", "classifier", "copy"])
def test_training_flops_match_pytorchs_counter(kind):
    config = ModelConfig.named(
        "tiny", vocab_size=300, dropout=0.0, backend="explicit", copy_attention=kind == "copy", d_model=64, d_ff=256
    )
    B, S, T = 4, 12, 9
    src = torch.randint(4, 300, (B, S))
    tgt = torch.randint(4, 300, (B, T + 1))
    model = EncoderClassifier(config) if kind == "classifier" else EncoderDecoder(config)
    with FlopCounterMode(display=False) as counter:
        if kind == "classifier":
            model(src).sum().backward()
        else:
            model(src, tgt[:, :-1]).float().sum().backward()
    ours = training_flops(config, B, S, None if kind == "classifier" else T)
    assert ours == pytest.approx(counter.get_total_flops(), rel=0.05)


def test_masked_lm_flops_match_pytorchs_counter():
    config = ModelConfig.named("tiny", vocab_size=300, dropout=0.0, backend="explicit", d_model=64, d_ff=256)
    B, S = 4, 12
    src = torch.randint(5, 300, (B, S))
    labels = torch.full((B, S), -100)
    labels[:, ::5] = src[:, ::5]  # 3 predicted positions per row
    model = MaskedLM(config)
    with FlopCounterMode(display=False) as counter:
        model.loss(src, labels)[0].backward()
    ours = training_flops(config, B, S, predicted=int(labels.ne(-100).sum()))
    assert ours == pytest.approx(counter.get_total_flops(), rel=0.05)
