"""What the two LightningModules share, written once: optimizer setup, the checkpoint artifacts, the guard against
non-finite losses, and the normalization of the loss by the optimizer step's size."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

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


def training_loss(module: pl.LightningModule, summed: torch.Tensor, size: torch.Tensor | int, batch_size: int):
    """What training_step returns for a micro-batch's summed loss over `size` tokens (or examples): logged as a
    mean, skipped when not finite (NonFiniteGuard), counted for the step's normalization (StepNormalizer)."""
    module.log("train/loss", summed.detach() / max(int(size), 1), prog_bar=True, batch_size=batch_size)
    loss = module.guard(module, summed)
    if loss is not None:
        module.step_size.add(size)
    return loss


class StepNormalizer:
    """Normalizes the loss by the number of target tokens (or examples) of the whole optimizer step, across
    accumulation steps and ranks, as fairseq does, so that gradients do not depend on how a step is split.

    Each micro-batch's training_step returns its summed loss and `add`s its size. Lightning divides what
    training_step returns by accumulate_grad_batches (A), and DDP averages gradients over the W ranks, so after
    the last micro-batch the gradient is sum(grad of summed losses) / (A * W). `apply` (before clipping and the
    optimizer step) multiplies it by A * W / (the step's size summed over ranks): the gradient of the mean over
    all the step's tokens. Then 2 ranks x B examples give the gradient of 1 rank on the same 2B examples, and
    accumulation 2 the gradient of one batch twice as large (tests/test_distributed.py).
    """

    def __init__(self) -> None:
        self.size = 0

    def add(self, size: torch.Tensor | int) -> None:
        self.size += int(size)

    def apply(self, module: pl.LightningModule) -> None:
        trainer = module.trainer
        total = torch.tensor(float(self.size), device=module.device)
        if trainer.world_size > 1:
            total = trainer.strategy.reduce(total, reduce_op="sum")
        self.size = 0
        scale = trainer.accumulate_grad_batches * trainer.world_size / max(float(total), 1.0)
        for param in module.parameters():
            if param.grad is not None:
                param.grad.mul_(scale)


def gather_unique(outputs: list[tuple]) -> dict[int, tuple]:
    """{example index: the rest of its tuple} over all ranks, each example once: the evaluation samplers give
    every rank the same number of batches by repeating a few, which must not count twice in a metric."""
    if dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, outputs)
        outputs = [item for part in gathered for item in part]
    return {item[0]: tuple(item[1:]) for item in outputs}
