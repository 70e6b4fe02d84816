"""`TransformerModule`: what every objective's LightningModule shares, written once. It owns the training step's
plumbing (the loss normalized by the optimizer step's size, the guard against non-finite losses, the optimizer and
its schedule), the checkpoint artifacts, the sharding hook, and the wiring of validation and test; an objective
(objectives/classification.py, seq2seq.py, pretrain.py) adds only its model, loss and metrics:

    step_loss(batch)                       -> (summed loss, its size in tokens or examples, batch size)
    evaluate_batch(batch, batch_idx, stage)   one validation/test batch (stage: val | test)
    log_metrics(stage)                        the split's metrics, at the end of validation/test
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from transformer.checkpoint import Artifacts
from transformer.errors import UserError
from transformer.optim import OptimConfig, build_optimizer, total_training_steps

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError):
    """The loss stayed NaN/inf for too many steps in a row."""


class TransformerModule(pl.LightningModule):
    """The shared steps of the objectives' LightningModules (see the module docstring for what each adds)."""

    def __init__(self, artifacts: Artifacts, optim: OptimConfig, max_nonfinite_steps: int = 10) -> None:
        super().__init__()
        self.artifacts = artifacts  # configs, tokenizers and labels, stored in every checkpoint
        self.optim = optim
        self.guard = NonFiniteGuard(max_nonfinite_steps)
        self.step_size = StepNormalizer()
        self._outputs: list[tuple] = []  # this validation's (or test's) per-example outputs, from evaluate_batch
        self.predictions: list[tuple] = []  # the last test's outputs, by example index
        self.last_validation: dict[int, tuple] = {}  # the latest validation's outputs, by example index

    def step_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | int, int]:
        """(the micro-batch's summed loss, the number of tokens or examples it sums over, its batch size)."""
        raise NotImplementedError

    def evaluate_batch(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        raise NotImplementedError

    def log_metrics(self, stage: str) -> None:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        """The summed loss, logged as a mean, skipped when not finite (NonFiniteGuard), counted for the step's
        normalization (StepNormalizer divides by the optimizer step's tokens or examples)."""
        summed, size, batch_size = self.step_loss(batch)
        self.log("train/loss", summed.detach() / max(int(size), 1), prog_bar=True, batch_size=batch_size)
        loss = self.guard(self, summed)
        if loss is not None:
            self.step_size.add(size)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.step_size.apply(self)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.model, self.optim, total_training_steps(self.trainer))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def configure_model(self) -> None:
        # hardware=fsdp: the strategy (training/fsdp.py) shards the model block by block; other strategies have no
        # shard_model. Asked of the strategy, so that the objectives do not import the training layer above them.
        shard_model = getattr(self.trainer.strategy, "shard_model", None)
        if shard_model is not None:
            shard_model(self.model)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.artifacts.store(checkpoint)

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def validation_step(self, batch, batch_idx):
        self.evaluate_batch(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def test_step(self, batch, batch_idx):
        self.evaluate_batch(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test")


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


class StepNormalizer:
    """Normalizes the loss by the number of target tokens (or examples) of the whole optimizer step, across
    accumulation steps and ranks, as fairseq does, so that gradients do not depend on how a step is split.

    Each micro-batch's training_step returns its summed loss and `add`s its size. Lightning divides what
    training_step returns by accumulate_grad_batches (A), and DDP averages gradients over the W ranks, so after
    the last micro-batch the gradient is sum(grad of summed losses) / (A * W). `apply` (before clipping and the
    optimizer step) multiplies it by A * W / (the step's size summed over ranks): the gradient of the mean over
    all the step's tokens. Then 2 ranks x B examples give the gradient of 1 rank on the same 2B examples, and
    accumulation 2 the gradient of one batch twice as large (tests/training/test_distributed.py).
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
