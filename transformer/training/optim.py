"""AdamW with an inverse-square-root (Noam) or cosine learning-rate schedule, both with linear warmup."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from transformer.errors import ConfigError


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9
    weight_decay: float = 0.01
    schedule: str = "noam"  # "noam" (inverse square root) | "cosine" | "constant"
    warmup_steps: int = 400
    min_lr_ratio: float = 0.0  # cosine: final lr = min_lr_ratio * lr
    label_smoothing: float = 0.1
    no_decay: list[str] = field(default_factory=lambda: ["bias", "norm", "embed"])

    def __post_init__(self) -> None:
        if self.schedule not in ("noam", "cosine", "constant"):
            raise ConfigError(f"optim.schedule={self.schedule!r} is not one of ('noam', 'cosine', 'constant')")
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers, got {list(self.betas)}")
        self.betas = tuple(self.betas)


def lr_multiplier(step: int, config: OptimConfig, total_steps: int) -> float:
    """Factor applied to the peak lr at optimizer step `step` (0-based)."""
    step += 1
    warmup = config.warmup_steps
    if warmup and step < warmup:
        return step / warmup
    if config.schedule == "noam":  # lr * min(step / warmup, sqrt(warmup / step)): the paper's shape
        return math.sqrt(max(warmup, 1) / step)
    if config.schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(model: nn.Module, config: OptimConfig, total_steps: int):
    """AdamW without weight decay on biases, norms and embeddings, and a per-step LambdaLR."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if any(key in name for key in config.no_decay) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, config, total_steps))
    return optimizer, {"scheduler": scheduler, "interval": "step"}


def total_training_steps(trainer) -> int:
    """Optimizer steps of the whole run, from max_steps or from the datamodule's batches per epoch.

    Lightning's `trainer.estimated_stepping_batches` would build the train loader before a resumed run restores
    its position in the epoch, so the data order after resuming would be wrong.
    """
    if trainer.max_steps and trainer.max_steps > 0:
        return trainer.max_steps
    batches = trainer.datamodule.train_batches_per_epoch()
    if trainer.limit_train_batches is not None and trainer.limit_train_batches != 1.0:
        limit = trainer.limit_train_batches
        batches = int(limit) if isinstance(limit, int) else int(batches * limit)
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches) * max(1, trainer.max_epochs or 1))
