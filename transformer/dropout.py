"""Dropout with a faster CPU path.

On CPU, `F.dropout` draws one random float per element (aten::bernoulli_), which profiling put at ~25% of a
training step of the small encoder-decoder with dropout 0.3. Here each element gets one random byte instead,
eight from every 64-bit draw, and is kept when the byte is >= round(p * 256). The drop probability is thus p
rounded to a multiple of 1/256 (0.3 becomes 77/256 = 0.3008) and the kept values are scaled by exactly
1 / (1 - 77/256), so the expectation is unchanged. The draws come from torch's generator, so seeding and the
saved RNG state apply as usual. Other devices use F.dropout, and so does code that torch.compile traces: there
the compiler generates the mask inside the fused kernel (`random_` over int64 would break the graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FAST_CPU = True  # False: F.dropout everywhere (benchmarks/model_throughput.py --ablation compares the two)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    if not training or p == 0.0:
        return x
    threshold = round(p * 256)
    if x.device.type != "cpu" or not FAST_CPU or not 0 < threshold < 256 or torch.compiler.is_compiling():
        return F.dropout(x, p, training)
    words = torch.empty((x.numel() + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = words.view(torch.uint8)[: x.numel()].view(x.shape) >= threshold
    return x * keep * (256 / (256 - threshold))


class Dropout(nn.Module):
    """nn.Dropout with the fast CPU path of `dropout`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
