"""The fast CPU dropout: drop rate, unbiased scaling, gradient through the same mask, eval is identity."""

from __future__ import annotations

import pytest
import torch

from transformer.dropout import Dropout, dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_rate_and_scale(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(200_000, dtype=dtype)
    out = dropout(x, p)
    kept = out != 0
    rate = round(p * 256) / 256
    assert abs((~kept).float().mean().item() - rate) < 0.005
    assert torch.allclose(out[kept].float(), torch.full_like(out[kept].float(), 1 / (1 - rate)), rtol=1e-2)
    assert abs(out.float().mean().item() - 1.0) < 0.01  # unbiased


def test_gradient_uses_the_same_mask_and_seed_reproduces():
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(1)
    out = dropout(x, 0.3)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float() * (256 / 179))
    torch.manual_seed(1)
    assert torch.equal(dropout(x, 0.3), out)


def test_eval_and_zero_are_identity():
    x = torch.randn(10, 10)
    module = Dropout(0.3).eval()
    assert module(x) is x
    assert dropout(x, 0.0) is x
    assert dropout(x, 0.3, training=False) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
