"""Which kernels torch.compile (Inductor) makes of one encoder block in training: the evidence that the residual
add, dropout and LayerNorm are already fused, so the framework keeps them as plain PyTorch (issue 25, item 6).

    python benchmarks/compile_fusion.py                  # CPU: C++ kernels (cpp_fused_*)
    python benchmarks/compile_fusion.py --device cuda    # GPU: Triton kernels (triton_*_fused_*)

Prints the generated kernels of the forward and the backward graph, by name (Inductor names a kernel after the
operators it fuses).
"""

from __future__ import annotations

import argparse
import re

import torch
from torch._inductor.utils import run_and_get_code

from transformer import ModelConfig
from transformer.model import EncoderBlock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="tiny")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = ModelConfig.named(args.size, vocab_size=100, dropout=0.1)
    block = EncoderBlock(config).to(args.device).train()
    x = torch.randn(8, 16, config.d_model, device=args.device, requires_grad=True)
    compiled = torch.compile(block)

    def step() -> None:
        compiled(x, None).sum().backward()

    _, codes = run_and_get_code(step)
    for name, code in zip(("forward", "backward"), codes, strict=False):
        kernels = sorted(set(re.findall(r"\b(cpp_fused_\w+|triton_\w+_fused_\w+)", code)))
        print(f"{name}: {len(kernels)} kernels")
        for kernel in kernels:
            print(f"  {kernel}")


if __name__ == "__main__":
    main()
