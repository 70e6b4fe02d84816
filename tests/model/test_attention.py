"""Multi-head attention against torch.nn.MultiheadAttention, and the fused path against the explicit one."""

import pytest
import torch
from torch import nn

from transformer.attention import AttentionCache, MultiHeadAttention

D, H, B, T, S = 32, 4, 3, 5, 7


def paired(bias: bool = True):
    torch.manual_seed(0)
    ours = MultiHeadAttention(D, H, bias=bias, backend="explicit").eval()
    ref = nn.MultiheadAttention(D, H, bias=bias, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            for p in (ours.in_proj.bias, ours.out_proj.bias):
                p.normal_()
            ref.in_proj_bias.copy_(ours.in_proj.bias)
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ours, ref


def padding(lengths, total):
    return torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]  # (B, total) True at padding


@pytest.mark.parametrize("backend", ["explicit", "sdpa"])
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_matches_torch(backend, bias):
    ours, ref = paired(bias)
    ours.backend = backend
    x = torch.randn(B, T, D)
    pad = padding([5, 3, 1], T)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # True = not allowed
    for kwargs, ref_kwargs in [
        ({}, {}),
        ({"key_padding_mask": pad}, {"key_padding_mask": pad}),
        ({"causal": True}, {"attn_mask": causal, "is_causal": True}),
        ({"causal": True, "key_padding_mask": pad}, {"attn_mask": causal, "key_padding_mask": pad}),
    ]:
        out, _ = ours(x, **kwargs)
        expected, _ = ref(x, x, x, need_weights=False, **ref_kwargs)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_cross_attention_and_weights_match_torch():
    ours, ref = paired()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    pad = padding([7, 4, 2], S)
    out, weights = ours(x, memory, key_padding_mask=pad, need_weights=True)
    expected, expected_weights = ref(x, memory, memory, key_padding_mask=pad, average_attn_weights=False)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-5, atol=1e-6)


def test_fast_path_equals_explicit_path_and_weights_are_a_distribution():
    torch.manual_seed(1)
    attention = MultiHeadAttention(D, H).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    pad = padding([7, 4, 2], S)
    for args, kwargs in [((x,), {"causal": True}), ((x, memory), {"key_padding_mask": pad})]:
        attention.backend = "sdpa"
        fast, none = attention(*args, **kwargs)
        attention.backend = "explicit"
        slow, weights = attention(*args, **kwargs, need_weights=True)
        assert none is None
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    # masked keys get exactly zero weight, future positions too
    assert weights.masked_select(pad[:, None, None, :].expand_as(weights)).eq(0).all()
    _, causal_weights = attention(x, causal=True, need_weights=True)
    assert causal_weights.triu(1).eq(0).all()


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attention = MultiHeadAttention(D, H, dropout=0.5)
    x = torch.randn(B, T, D)
    attention.train()
    assert not torch.allclose(attention(x)[0], attention(x)[0])
    attention.eval()
    torch.testing.assert_close(attention(x)[0], attention(x)[0])


@pytest.mark.parametrize("backend", ["explicit", "sdpa"])
def test_incremental_self_attention_equals_causal_full(backend):
    torch.manual_seed(0)
    attention = MultiHeadAttention(D, H, backend=backend).eval()
    x = torch.randn(B, T, D)
    full, _ = attention(x, causal=True)
    cache = AttentionCache()
    steps = [attention(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)
    assert cache.k.shape == (B, H, T, D // H)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="backend"):
        MultiHeadAttention(32, 4, backend="flash")
    attention = MultiHeadAttention(D, H)
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        attention(torch.randn(B, T, D), key_padding_mask=torch.zeros(B, T + 1, dtype=torch.bool))
