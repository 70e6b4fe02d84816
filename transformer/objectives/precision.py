"""bf16 weights with fp32 master weights (precision=bf16-true, which hardware.bf16_weights=true chooses).

Under autocast (bf16-mixed) the weights stay fp32 and every matmul casts its weight to bf16 again, at every call
and in the backward pass too: on a GPU those casts were 14% of a base model's step. Here the module itself is
bf16 (Lightning's bf16-true converts it), so its weights are cast once per step, after the optimizer step, from
fp32 master copies that the optimizer updates: an update smaller than bf16's resolution (8 bits of mantissa)
still accumulates in the masters, as in mixed-precision training (Micikevicius et al., 2018).

The step: the bf16 gradients (normalized and checked by base.py) are copied into the masters' gradients, which
are clipped and stepped by AdamW (fused where it runs), and the masters are copied back into the bf16 weights.
Checkpoints hold the fp32 masters under the module's parameter names, as a bf16-mixed run's hold its fp32 weights,
so evaluation, averaging, export and a resumed run read them as before.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MasterWeights:
    """The fp32 masters of a module's parameters, by name, taken before Lightning casts the module to bf16."""

    def __init__(self, module: nn.Module) -> None:
        self.master = {name: p.detach().float().clone() for name, p in module.named_parameters()}
        # every name of a shared (tied) parameter -> the name its master goes by
        first = {id(p): name for name, p in module.named_parameters()}
        self.aliases = {name: first[id(p)] for name, p in module.named_parameters(remove_duplicate=False)}
        self.pairs: list[tuple[nn.Parameter, torch.Tensor]] = []  # (bf16 parameter, its fp32 master)

    def load(self, state_dict: dict[str, Any]) -> None:
        """A resumed run's masters: the checkpoint's fp32 weights (its module was cast to bf16 on loading)."""
        for name in self.master:
            if name in state_dict:
                self.master[name] = state_dict[name].detach().float().clone()

    def bind(self, module: nn.Module) -> dict[nn.Parameter, torch.Tensor]:
        """After Lightning moved and cast the module: {its parameter: the master the optimizer updates instead}."""
        params = dict(module.named_parameters())
        self.pairs = [(params[name], master.to(params[name].device)) for name, master in self.master.items()]
        for param, master in self.pairs:
            master.requires_grad_(param.requires_grad)
        self.master = {name: master for name, (_, master) in zip(self.master, self.pairs, strict=True)}
        return dict(self.pairs)

    def copy_gradients(self) -> None:
        """bf16 gradients -> the masters' fp32 gradients (before clipping and the optimizer step)."""
        dst, src = [], []
        for param, master in self.pairs:
            if param.grad is None:
                master.grad = None  # AdamW skips it, as it would skip the parameter
                continue
            if master.grad is None:
                master.grad = torch.empty_like(master)
            dst.append(master.grad)
            src.append(param.grad)
        if dst:
            torch._foreach_copy_(dst, src)

    def copy_weights(self) -> None:
        """The masters -> the bf16 weights: the one cast of the step."""
        if self.pairs:
            torch._foreach_copy_([p.data for p, _ in self.pairs], [m for _, m in self.pairs])

    def store(self, state_dict: dict[str, Any]) -> None:
        """The checkpoint's weights: the fp32 masters in place of the bf16 parameters (tied ones under each name)."""
        for name, canonical in self.aliases.items():
            if name in state_dict:
                state_dict[name] = self.master[canonical].detach().clone()
