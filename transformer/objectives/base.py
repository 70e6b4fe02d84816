"""`TransformerModule`: what every objective's LightningModule shares, written once. It owns the training step's
plumbing (the loss normalized by the optimizer step's size, the guard against NaN/inf losses, gradients and
weights, the optimizer and its schedule), the checkpoint artifacts, the sharding hook, and the wiring of
validation and test; an objective (objectives/classification.py, seq2seq.py, pretrain.py) adds only its model, loss
and metrics:

    step_loss(batch)                       -> (summed loss, its size in tokens or examples, batch size)
    evaluate_batch(batch, batch_idx, stage)   one validation/test batch (stage: val | test)
    log_metrics(stage)                        the split's metrics, at the end of validation/test
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from transformer.checkpoint import Artifacts, find_resume_checkpoint
from transformer.errors import UserError
from transformer.optim import OptimConfig, apply_config, build_optimizer, total_training_steps

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError):
    """The loss (or the gradients) stayed NaN/inf for too many steps in a row."""


class NonFiniteWeightsError(UserError):
    """An optimizer step made the weights NaN/inf."""


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
        self.guard.check_gradients(self)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.guard.check_weights(self)  # before on_train_batch_end, where checkpoints are saved

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.model, self.optim, total_training_steps(self.trainer))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_train_start(self) -> None:
        if self.trainer.ckpt_path:  # resumed: the optimizer settings are this run's, which may differ (allow_changes)
            scheduler = self.trainer.lr_scheduler_configs[0].scheduler
            apply_config(self.trainer.optimizers[0], scheduler, self.model, self.optim)

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
    """Keeps NaN/inf out of the weights. A step whose loss (training_step returns None) or whose gradient norm is
    NaN/inf is skipped, and `max_in_a_row` such steps in a row stop the run. Should a step still make the weights
    NaN/inf (an update too large for the number format), the run stops at once, before any checkpoint takes them
    (and checkpoint.py refuses to write NaN/inf anyway); the message names the last good checkpoint, the one a
    relaunch resumes from. Under DDP and FSDP the ranks agree, so all skip or stop at the same step (one would hang
    otherwise). Under a GradScaler (precision=16-mixed) the scaler skips the steps of inf gradients itself, as
    part of its scale search, so those are not counted here."""

    def __init__(self, max_in_a_row: int = 10) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.kinds: set[str] = set()  # what was NaN/inf in this streak: loss, gradients
        self.total = 0

    def __call__(self, module: pl.LightningModule, loss: torch.Tensor) -> torch.Tensor | None:
        if all_ranks_finite(module, [loss.detach()]):
            return loss
        self._skip(module, "loss")
        return None

    def check_gradients(self, module: pl.LightningModule) -> None:
        """Before the optimizer step (after normalization, before clipping): a NaN/inf gradient norm drops all
        gradients, so that the optimizer leaves the weights and its state as they are. A step that goes ahead
        ends the streak of skipped ones."""
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:  # every micro-batch's loss was skipped
            return
        scaled = getattr(module.trainer.precision_plugin, "scaler", None) is not None
        if scaled or all_ranks_finite(module, grads, norm=2.0):
            self.in_a_row = 0
            self.kinds = set()
            return
        for param in module.parameters():
            param.grad = None
        self._skip(module, "gradients")

    def check_weights(self, module: pl.LightningModule) -> None:
        """After the optimizer step: weights that became NaN/inf stop the run before anything saves them."""
        if all_ranks_finite(module, list(module.parameters())):
            return
        raise NonFiniteWeightsError(
            f"the weights became NaN/inf at step {module.global_step} although its loss and gradients were "
            f"finite (an update too large): training stopped, {last_good(module)}; lower optim.lr or "
            f"optim.weight_decay (relaunch with allow_changes=[optim.lr] to keep the run)"
        )

    def _skip(self, module: pl.LightningModule, what: str) -> None:
        self.in_a_row += 1
        self.kinds.add(what)
        self.total += 1
        step = module.global_step
        log.warning(
            "non-finite %s at step %d: step skipped (%d in a row, %d in all)", what, step, self.in_a_row, self.total
        )
        module.log("train/nonfinite_steps", float(self.total), on_step=True, on_epoch=False)
        if self.in_a_row >= self.max_in_a_row:
            what = {"loss": "the loss was", "gradients": "the gradients were"}.get(
                "".join(self.kinds), "the loss or the gradients were"
            )
            raise NonFiniteLossError(
                f"{what} NaN/inf for {self.in_a_row} steps in a row (the last at step {step}): training "
                f"stopped, {last_good(module)}; lower optim.lr (relaunch with allow_changes=[optim.lr] to keep the "
                f"run), raise optim.warmup_steps or use precision=32-true"
            )


def all_ranks_finite(module: pl.LightningModule, tensors: list[torch.Tensor], norm: float = float("inf")) -> bool:
    """Whether every tensor is finite on every rank: one fused norm per rank (a NaN/inf element makes it NaN/inf;
    norm=2 is the gradient norm that clipping computes, which also overflows for gradients too large to use), and
    one all-reduce. A sharded tensor (FSDP's DTensor) is checked by its local shard, as each rank holds one."""
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    local = [t.detach() for t in local if t.numel()]
    if local:
        norms = torch._foreach_norm(local, norm)
        total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), norm)
        finite = torch.isfinite(total).float()
    else:
        finite = torch.ones((), device=module.device)
    trainer = module.trainer
    if trainer is not None and trainer.world_size > 1:
        finite = trainer.strategy.reduce(finite, reduce_op="sum") / trainer.world_size
    return bool(finite >= 1)


def last_good(module: pl.LightningModule) -> str:
    """Which checkpoint a relaunch resumes from (the run directory's newest full one: all hold finite weights)."""
    found = find_resume_checkpoint(Path(module.trainer.default_root_dir), module.artifacts.task)
    if found is None:
        return "no checkpoint was written yet, so a relaunch starts afresh"
    return f"the last good checkpoint is {found}, which a relaunch resumes from"


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
