"""What the two LightningModules share, written once: optimizer setup, the checkpoint artifacts, and the guard
against non-finite losses."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from transformer.errors import UserError
from transformer.training.optim import build_optimizer, total_training_steps

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError):
    """The loss stayed NaN/inf for too many steps in a row."""


def configure_optimizers(module: pl.LightningModule) -> dict[str, Any]:
    optimizer, scheduler = build_optimizer(module.model, module.optim, total_training_steps(module.trainer))
    return {"optimizer": optimizer, "lr_scheduler": scheduler}


def save_artifacts(module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
    checkpoint["transformer"] = module.artifacts  # tokenizers, configs and labels: see training/checkpoint.py


class NonFiniteGuard:
    """Skips the optimizer step of a NaN/inf loss (training_step returns None) and stops the run after
    `max_in_a_row` such steps in a row. The weights are never updated from a bad loss, so the checkpoints on disk
    keep the last good weights. Under DDP the ranks agree, so all skip the same step (one would hang otherwise)."""

    def __init__(self, max_in_a_row: int = 10) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.total = 0

    def __call__(self, module: pl.LightningModule, loss: torch.Tensor) -> torch.Tensor | None:
        finite = torch.isfinite(loss.detach()).float()
        trainer = module.trainer
        if trainer is not None and trainer.world_size > 1:
            finite = trainer.strategy.reduce(finite, reduce_op="sum") / trainer.world_size
        if bool(finite >= 1):
            self.in_a_row = 0
            return loss
        self.in_a_row += 1
        self.total += 1
        step = module.global_step
        log.warning(
            "non-finite loss at step %d: step skipped (%d in a row, %d in all)", step, self.in_a_row, self.total
        )
        module.log("train/nonfinite_steps", float(self.total), on_step=True, on_epoch=False)
        if self.in_a_row >= self.max_in_a_row:
            raise NonFiniteLossError(
                f"the loss was NaN/inf for {self.in_a_row} steps in a row (the last at step {step}): training "
                f"stopped, the checkpoints keep the last good weights; lower optim.lr, raise optim.warmup_steps or "
                f"use precision=32-true"
            )
        return None
